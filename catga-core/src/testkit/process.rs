//! A server process of a test's own, for tests that kill, restart or cut off their broker.

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A loopback port nothing listens on right now (bound, then released). Another process may
/// take it before the caller does: a server started on it then exits, and
/// [`ServerProcess::change_port`] picks another.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A server started by a test on a free loopback port, with a fresh directory for its data;
/// stopped by its PID (SIGKILL) and its directory removed when dropped, also when the test
/// panics.
///
/// The caller builds the command line (it knows the server's options) from
/// [`port`](Self::port) and [`dir`](Self::dir), and decides when the server is ready: a port
/// that accepts connections ([`wait_listening`](Self::wait_listening)), or an answer from the
/// server it started and not another.
#[derive(Debug)]
pub struct ServerProcess {
    program: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    /// The server binary: the path in the environment variable `var` if set, else `name` in
    /// `/usr/sbin`, `/usr/bin` or `/usr/local/bin`; `None` when it is not installed.
    pub fn program(var: &str, name: &str) -> Option<PathBuf> {
        let candidates = [
            std::env::var_os(var).map(PathBuf::from),
            Some(Path::new("/usr/sbin").join(name)),
            Some(Path::new("/usr/bin").join(name)),
            Some(Path::new("/usr/local/bin").join(name)),
        ];
        candidates.into_iter().flatten().find(|path| path.is_file())
    }

    /// A server of `program`, not started yet: a free port and a new directory whose name
    /// starts with `label`.
    pub fn new(program: impl Into<PathBuf>, label: &str) -> ServerProcess {
        let dir = std::env::temp_dir().join(super::unique(label));
        std::fs::create_dir_all(&dir).expect("a directory for the server's data");
        ServerProcess {
            program: program.into(),
            port: free_port(),
            dir,
            child: None,
        }
    }

    /// The loopback port the server is to listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the program with `args` (its output discarded), stopping a previous run first.
    pub fn start<S: AsRef<OsStr>>(&mut self, args: impl IntoIterator<Item = S>) {
        self.kill();
        let child = Command::new(&self.program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// Whether the process has exited (or was never started): a server whose port another
    /// process took exits at once.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Waits until the port accepts connections (`true`), or the process exited (`false`);
    /// panics after `bound`.
    pub async fn wait_listening(&mut self, bound: Duration) -> bool {
        let address = format!("127.0.0.1:{}", self.port);
        let ready = tokio::time::timeout(bound, async {
            loop {
                if self.exited() {
                    return false;
                }
                if TcpStream::connect(&address).is_ok() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        ready.unwrap_or_else(|_| {
            panic!(
                "{} did not listen on {address} within {bound:?}",
                self.program.display()
            )
        })
    }

    /// Picks another free port, for a start whose port was taken.
    pub fn change_port(&mut self) {
        self.port = free_port();
    }

    /// SIGKILL by PID: no chance to flush or say goodbye. Returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes the data directory: a server started again comes back without its data.
    pub fn wipe(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        self.wipe();
    }
}
