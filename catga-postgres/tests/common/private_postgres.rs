//! A PostgreSQL server of a test's own, for tests that crash and restart it: a cluster made by
//! `initdb` in a fresh directory (trust authentication), run as a child process on a free
//! loopback port (TCP on 127.0.0.1 only, no Unix socket), stopped by its PID.
//!
//! [`stop_immediate`](PrivatePostgres::stop_immediate) sends the postmaster SIGQUIT, which is
//! what `pg_ctl stop -m immediate` does: every backend is killed at once, nothing is
//! checkpointed, and the next start replays the write-ahead log as after a crash. (SIGKILL of
//! the postmaster alone would leave its backends running, holding the shared memory a restart
//! needs.) Dropping the server stops it the same way, also when the test panics, and removes
//! its directory.
//!
//! Postgres refuses to run as root: a test running as root runs `initdb` and the server as
//! the `postgres` user.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use catga_core::testkit::{self, free_port, services};

/// The directory holding `initdb` and `postgres`: `$CATGA_POSTGRES_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`; `None` after saying why the test is skipped (a
/// failure under `CATGA_REQUIRE_SERVICES=1`).
pub fn binaries_or_skip(test: &str) -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let from_env = std::env::var_os("CATGA_POSTGRES_BIN_DIR").map(PathBuf::from);
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    installed.sort();
    let found = from_env
        .into_iter()
        .chain(installed.into_iter().rev().map(|(_, dir)| dir))
        .find(|dir| has_both(dir));
    if found.is_none() {
        services::unavailable(
            test,
            "no PostgreSQL server binaries (looked at $CATGA_POSTGRES_BIN_DIR and /usr/lib/postgresql/*/bin)",
            "install postgresql or set CATGA_POSTGRES_BIN_DIR",
        );
        return None;
    }
    if running_as_root() && postgres_user().is_none() {
        services::unavailable(
            test,
            "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run it as",
            "run the tests as another user, or create a `postgres` user",
        );
        return None;
    }
    found
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's (uid, gid), from `/etc/passwd`.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// A private server. See the [module docs](self).
pub struct PrivatePostgres {
    bin: PathBuf,
    /// The test's directory: the cluster in `data/`, the server's log in `postgres.log`.
    dir: PathBuf,
    pub port: u16,
    /// Who runs `initdb` and the server when the tests run as root.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Creates a cluster and starts it on a free port; returns once it accepts queries.
    pub async fn start(bin: &Path, label: &str) -> PrivatePostgres {
        let dir = std::env::temp_dir().join(testkit::unique(label));
        std::fs::create_dir_all(&dir).expect("a directory for the private server");
        let owner = if running_as_root() {
            let owner = postgres_user().expect("a `postgres` user (checked by binaries_or_skip)");
            std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))
                .expect("give the server's directory to the `postgres` user");
            Some(owner)
        } else {
            None
        };
        let mut server = PrivatePostgres {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            owner,
            child: None,
        };
        let initdb = server
            .command("initdb")
            .arg("--pgdata")
            .arg(server.data())
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        // A port the OS just handed out may be taken by another process before the server
        // binds it: the server then exits, and another port is tried.
        for _ in 0..5 {
            if server.spawn_and_wait().await {
                return server;
            }
            server.port = free_port();
        }
        panic!(
            "could not start a private PostgreSQL on a free port; its log:\n{}",
            server.log()
        );
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server as `pg_ctl stop -m immediate` does (SIGQUIT to the postmaster, by
    /// PID): its backends are killed, nothing is flushed or checkpointed. Returns once the
    /// postmaster exited, so no connection to this server can succeed until
    /// [`restart`](Self::restart).
    pub fn stop_immediate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-s", "QUIT", &pid]).status();
        // The postmaster waits for its backends to exit before it does; a server that does
        // not stop within the bound is killed.
        for _ in 0..1_000 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the (stopped) server again on the same port and data directory; returns once
    /// it accepts queries (crash recovery done).
    pub async fn restart(&mut self) {
        assert!(
            self.spawn_and_wait().await,
            "the private PostgreSQL could not start again on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the server and waits until it answers queries; false if it exited instead
    /// (its port was taken). The server that answers must be this one (its data directory),
    /// never one another test started on the same port.
    async fn spawn_and_wait(&mut self) -> bool {
        self.stop_immediate();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("open the server's log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                // A crash here is a process crash, not the machine's: what was written
                // survives in the page cache, so skipping fsync changes nothing the tests
                // look at and keeps commits cheap. `synchronous_commit` stays on: a commit
                // the client saw is in the log before the answer.
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let data = std::fs::canonicalize(self.data()).expect("the data directory exists");
        let url = self.url();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if self
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some())
                {
                    return false;
                }
                if data_directory(&url).await.as_deref() == Some(data.as_path()) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        ready.unwrap_or_else(|_| {
            panic!(
                "the private PostgreSQL on port {} did not come up; its log:\n{}",
                self.port,
                self.log()
            )
        })
    }
}

/// The data directory of the server answering at `url`, if one answers.
async fn data_directory(url: &str) -> Option<PathBuf> {
    let ask = async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .ok()?;
        let dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
            .fetch_one(&mut conn)
            .await
            .ok()?;
        let _ = sqlx::Connection::close(conn).await;
        std::fs::canonicalize(dir).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_immediate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
