//! Where a builder connects and how: one server's URL or some nodes of a Redis Cluster, the
//! credentials that replace the URL's, and the TLS options. The transport's, the stores' and
//! the cache's builders each hold one, set it through their own methods, show it in their
//! `Debug` output with credentials hidden, and open it when awaited.

use std::fmt;
use std::time::Duration;

use catga_core::secret::{REDACTED, redact_url};
use redis::ConnectionInfo;
use redis::aio::ConnectionManager;

use super::cluster::{self, Cluster};
use crate::error::ConnectError;
use crate::tls::TlsOptions;

/// The connection options a builder records: what to connect to, with which credentials and
/// TLS options. Its `Debug` output shows URLs with their credentials hidden, never the value
/// of a credential or a private key.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    target: Target,
    /// Given with `user_and_password`: replaces the URL's user.
    username: Option<String>,
    /// Given with `user_and_password` or `password`: replaces the URL's password.
    password: Option<String>,
    tls: TlsOptions,
}

/// What a builder connects to.
#[derive(Clone)]
enum Target {
    /// One server (or a primary), by URL.
    Server(String),
    /// A Redis Cluster, by the URLs of some of its nodes.
    Cluster(Vec<String>),
}

/// What [`ConnectOptions::open`] connected to.
pub(crate) enum Opened {
    /// One server, for [`ConnectOptions::server`].
    Server(Server),
    /// A cluster, for [`ConnectOptions::cluster`].
    Cluster(Cluster),
}

/// A connection to one server.
pub(crate) struct Server {
    /// A client of the server, for connections of their own (blocking commands, pub/sub).
    pub client: redis::Client,
    /// One multiplexed connection that reconnects by itself.
    pub manager: ConnectionManager,
    /// What the client connects to: the URL parsed, with the credentials given.
    pub info: ConnectionInfo,
    /// The URL with its credentials hidden, for errors and logs.
    pub shown: String,
}

impl ConnectOptions {
    /// Options for the server at `url`, with no credentials but the URL's and the default
    /// TLS options (for `rediss://`, the system's certificate authorities and no client
    /// certificate).
    pub(crate) fn server(url: String) -> ConnectOptions {
        ConnectOptions::new(Target::Server(url))
    }

    /// Options for the Redis Cluster that `nodes` (URLs) belong to.
    pub(crate) fn cluster(nodes: Vec<String>) -> ConnectOptions {
        ConnectOptions::new(Target::Cluster(nodes))
    }

    fn new(target: Target) -> ConnectOptions {
        ConnectOptions {
            target,
            username: None,
            password: None,
            tls: TlsOptions::default(),
        }
    }

    /// Whether these options are for a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Authenticates as `user` with `password`, instead of any credentials in the URL.
    pub(crate) fn set_user_and_password(&mut self, user: String, password: String) {
        self.username = Some(user);
        self.password = Some(password);
    }

    /// Authenticates with `password`, instead of any password in the URL.
    pub(crate) fn set_password(&mut self, password: String) {
        self.password = Some(password);
    }

    /// The TLS options, which every connection opened from these options uses.
    pub(crate) fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// The TLS options, to add a certificate to.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_mut(&mut self) -> &mut TlsOptions {
        &mut self.tls
    }

    /// The builder method that set the first credential given, if any (`user_and_password`,
    /// `password`).
    pub(crate) fn credential_option(&self) -> Option<&'static str> {
        if self.username.is_some() {
            Some("user_and_password")
        } else if self.password.is_some() {
            Some("password")
        } else {
            None
        }
    }

    /// Adds the fields of these options to a builder's `Debug` output: `url` (or `cluster`)
    /// with credentials hidden, `username` and `password` as `"***"` when given, and `tls`.
    pub(crate) fn debug_fields(&self, out: &mut fmt::DebugStruct<'_, '_>) {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| REDACTED);
        match &self.target {
            Target::Server(url) => out.field("url", &redact_url(url)),
            Target::Cluster(nodes) => out.field(
                "cluster",
                &nodes.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            ),
        };
        out.field("username", &hidden(&self.username))
            .field("password", &hidden(&self.password))
            .field("tls", &self.tls);
    }

    /// Connects, each command answering within `timeout`: to the server (a client and a
    /// connection manager, every connection the client opens later using the same TLS
    /// options), or to the cluster.
    ///
    /// # Errors
    /// [`ConnectError::TlsUnsupported`] for `rediss://` without the `tls` feature,
    /// [`ConnectError::InvalidUrl`], [`ConnectError::InvalidTls`],
    /// [`ConnectError::TlsHandshake`], [`ConnectError::Unreachable`] and
    /// [`ConnectError::Unauthorized`]; for a cluster, also [`ConnectError::InvalidOption`]
    /// for no node.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<Opened, ConnectError> {
        let username = self.username.as_deref();
        let password = self.password.as_deref();
        match &self.target {
            Target::Server(url) => {
                let info = super::connection_info(url, username, password)?;
                let shown = redact_url(url).into_owned();
                let (client, manager) =
                    super::manager(info.clone(), &shown, &self.tls, timeout).await?;
                Ok(Opened::Server(Server {
                    client,
                    manager,
                    info,
                    shown,
                }))
            }
            Target::Cluster(nodes) => cluster::open(nodes, username, password, &self.tls, timeout)
                .await
                .map(Opened::Cluster),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    /// Written by hand so that a credential can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("ConnectOptions");
        self.debug_fields(&mut out);
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_every_credential() {
        let mut options = ConnectOptions::server("redis://user:secretpass@host:6379/0".into());
        options.set_user_and_password("secretuser".into(), "secrettoken".into());
        let shown = format!("{options:?}");
        for secret in ["secretpass", "secretuser", "secrettoken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("redis://***@host:6379/0"), "{shown}");
        assert!(shown.contains("password: Some(\"***\")"), "{shown}");
        let cluster = ConnectOptions::cluster(vec!["redis://:secretpass@a:7000".into()]);
        let shown = format!("{cluster:?}");
        assert!(!shown.contains("secretpass"), "{shown}");
        assert!(
            shown.contains("cluster: [\"redis://***@a:7000\"]"),
            "{shown}"
        );
    }

    #[test]
    fn the_first_credential_option_is_named() {
        let mut options = ConnectOptions::server("redis://host".into());
        assert_eq!(options.credential_option(), None);
        options.set_password("p".into());
        assert_eq!(options.credential_option(), Some("password"));
        options.set_user_and_password("u".into(), "p".into());
        assert_eq!(options.credential_option(), Some("user_and_password"));
    }
}
