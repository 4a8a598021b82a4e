//! Opening a connection to a Redis server from a URL, optional credentials and TLS options:
//! what the transport's, the stores' and the cache's builders share ([`ConnectOptions`]), so
//! a URL, a credential, a certificate and a refused connection read the same from all three.

use std::time::Duration;

use catga_core::secret::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::error::ConnectError;
use crate::tls::TlsOptions;

pub(crate) mod cluster;
mod multiplexed;
mod nodes;
mod options;
mod replicas;
mod slot;

pub(crate) use multiplexed::Multiplexed;
pub(crate) use nodes::{NodeAddr, Nodes};
pub(crate) use options::{ConnectOptions, Opened};
pub(crate) use replicas::{ReadAt, Replica, ReplicaOptions, Routing, connect_replicas};
pub(crate) use slot::{key_slot, slot_of_command};

/// What [`ConnectOptions::open`] connects to: `url` parsed, with the credentials given.
///
/// # Errors
/// [`ConnectError::TlsUnsupported`] for `rediss://` without the `tls` feature,
/// [`ConnectError::InvalidUrl`].
pub(crate) fn connection_info(
    url: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<ConnectionInfo, ConnectError> {
    // The only form of the URL that reaches an error or a log.
    let shown = redact_url(url).into_owned();
    // Built without TLS, the client refuses `rediss://` (and redis's `valkeys://`): say
    // why, rather than that the URL is not a URL.
    #[cfg(not(feature = "tls"))]
    {
        let scheme = url.trim_start().to_ascii_lowercase();
        if scheme.starts_with("rediss://") || scheme.starts_with("valkeys://") {
            return Err(ConnectError::TlsUnsupported { url: shown });
        }
    }
    let mut info = url
        .into_connection_info()
        .map_err(|source| ConnectError::InvalidUrl { url: shown, source })?;
    if username.is_some() || password.is_some() {
        let mut settings = info.redis_settings().clone();
        if let Some(username) = username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
    }
    Ok(info)
}

/// `info` with the server at `host:port` instead: another server of the same deployment
/// (a replica the primary lists), reached the same way, over TLS if `info` is.
pub(crate) fn at(info: &ConnectionInfo, host: String, port: u16) -> ConnectionInfo {
    let addr = match info.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    info.clone().set_addr(addr)
}

/// A client and a connection manager for `info`, with the TLS options `tls`; `shown` is its
/// URL with credentials hidden, for errors and logs.
///
/// # Errors
/// [`ConnectError::InvalidUrl`], [`ConnectError::InvalidTls`],
/// [`ConnectError::TlsHandshake`], [`ConnectError::Unreachable`],
/// [`ConnectError::Unauthorized`].
pub(crate) async fn manager(
    info: ConnectionInfo,
    shown: &str,
    tls: &TlsOptions,
    timeout: Duration,
) -> Result<(redis::Client, ConnectionManager), ConnectError> {
    tracing::debug!(target: "catga::redis", url = %shown, "connecting to Redis");
    let client = tls.client(info, shown)?;
    // Few, short reconnection attempts per command: a command fails within about a second
    // while the server is down, and the next command tries again, so callers decide how long
    // to keep trying.
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let manager = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(|source| ConnectError::connect(shown.to_string(), source))?;
    Ok((client, manager))
}
