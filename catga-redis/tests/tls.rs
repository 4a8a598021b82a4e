//! TLS to Redis (`rediss://`, the `tls` feature), against a private server that speaks only
//! TLS (`--port 0 --tls-port …`): the transport sends a command and delivers an event over it
//! (its blocking reply waits included), the stores and the cache connect over it, a server
//! whose CA is not trusted is refused with a typed error that says so, mutual TLS works with
//! a client certificate and is refused without one, and a bad certificate or key is a typed
//! error at `.await` that never shows the key.
//!
//! The certificates are made for each test with the `openssl` command: a CA, a certificate
//! for `127.0.0.1` it signed for the server, and one for a client.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::testkit::{eventually, services, unique};
use catga_redis::store::RedisStores;
use catga_redis::{ConnectError, RedisCache, RedisTransport};
use common::private_redis::{self, ClientCertificates, PrivateTlsRedis};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What the shipping service did.
#[derive(Default)]
pub struct Shipping {
    shipped: AtomicU64,
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Shipping {
        async fn ship(&self, cmd: Ship) -> Result<u64, Never> {
            Ok(cmd.order * 10)
        }

        async fn shipped(&self, event: &Shipped) -> Result<(), Never> {
            self.shipped.fetch_add(event.order, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// A CA, a server certificate for `127.0.0.1` and a client certificate it signed, as PEM
/// files in a directory of their own, removed when dropped.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes the certificates with `openssl`, or `None` (the test then returns, having said
    /// why) when it is not installed, unless `CATGA_REQUIRE_SERVICES=1`.
    fn new(test: &str) -> Option<Pki> {
        let installed = Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !installed {
            services::unavailable(
                test,
                "the `openssl` command is not installed",
                "install openssl",
            );
            return None;
        }
        let dir = std::env::temp_dir().join(unique("catga-tls-pki-"));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=catga test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.leaf(
            "server",
            "127.0.0.1",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        );
        pki.leaf(
            "client",
            "catga test client",
            "extendedKeyUsage=clientAuth\n",
        );
        Some(pki)
    }

    /// A key and a certificate signed by the CA, named `name`, with `extensions`.
    fn leaf(&self, name: &str, subject: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"
            ),
        )
        .expect("write the extensions");
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN={subject}");
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read a PEM")
    }

    /// A server presenting the server certificate, asking clients for theirs as `clients`.
    async fn server(&self, clients: ClientCertificates) -> PrivateTlsRedis {
        PrivateTlsRedis::start(
            &self.path("server.crt"),
            &self.path("server.key"),
            &self.path("ca.crt"),
            clients,
        )
        .await
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The certificates and a TLS server, or `None` when either cannot be had (see
/// [`Pki::new`] and [`private_redis::available`]).
async fn setup(test: &str, clients: ClientCertificates) -> Option<(Pki, PrivateTlsRedis)> {
    if !private_redis::available(test) {
        return None;
    }
    let pki = Pki::new(test)?;
    let server = pki.server(clients).await;
    Some((pki, server))
}

/// Every line of the base64 body of the PEM file `name`: none may appear in what is shown.
fn body_lines(pki: &Pki, name: &str) -> Vec<String> {
    String::from_utf8(pki.pem(name))
        .expect("PEM is text")
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 8)
        .map(str::to_string)
        .collect()
}

/// The error's `Display`, `Debug` and every source's `Display`.
fn everything_about(error: &ConnectError) -> String {
    catga_core::testkit::logs::everything_about(error)
}

#[tokio::test]
async fn a_command_and_an_event_travel_over_tls_with_the_ca_trusted() {
    let Some((pki, server)) = setup("tls_command_and_event", ClientCertificates::Optional).await
    else {
        return;
    };
    let prefix = unique("tls-shop-");
    let connect = || {
        RedisTransport::connect(server.url())
            .prefix(prefix.clone())
            .fetch_wait(Duration::from_millis(200))
            .tls_root_certificate(pki.pem("ca.crt"))
    };
    let serving_side = connect()
        .await
        .expect("a TLS connection with the CA trusted");
    let calling_side = connect()
        .await
        .expect("a TLS connection with the CA trusted");

    let state = Arc::new(Shipping::default());
    let shipping = Catga::builder()
        .state_arc(state.clone())
        .transport(serving_side)
        .service("shipping")
        .handlers(|h| h.name.starts_with("tls::shipping::"))
        .build()
        .unwrap();
    let serving = shipping.serve().await.expect("serve over TLS");
    let caller = Catga::builder()
        .transport(calling_side)
        .service("caller")
        .handlers(|_| false)
        .build()
        .unwrap();

    // The request goes over the shared connection, the reply is waited for on a blocking
    // connection of the caller's: both over TLS (the server has no other port).
    let tracking = caller.send(Ship { order: 7 }).await.expect("a reply");
    assert_eq!(tracking, 70);
    caller
        .publish(Shipped { order: 5 })
        .await
        .expect("published");
    eventually("the event is handled", || async {
        state.shipped.load(Ordering::SeqCst) == 5
    })
    .await;
    serving.shutdown().await;
}

#[tokio::test]
async fn the_stores_connect_over_tls_with_the_ca_trusted() {
    let Some((pki, server)) = setup("tls_stores", ClientCertificates::Optional).await else {
        return;
    };
    let stores = RedisStores::connect(server.url())
        .prefix("tls-stores")
        .tls_root_certificate(pki.pem("ca.crt"))
        .await
        .expect("the stores connect over TLS");
    assert_eq!(stores.prefix(), "tls-stores");
    assert!(format!("{stores:?}").contains("tls-stores"));
}

/// The cache takes the same options: it connects, loads its scripts and subscribes to
/// invalidations over TLS. A client given to `with_connection` carries its own TLS settings,
/// so the options are refused there.
#[tokio::test]
async fn the_cache_connects_over_tls_with_the_ca_trusted() {
    let Some((pki, server)) = setup("tls_cache", ClientCertificates::Optional).await else {
        return;
    };
    RedisCache::connect(server.url())
        .prefix("tls-cache")
        .tls_root_certificate(pki.pem("ca.crt"))
        .await
        .expect("the cache connects and subscribes over TLS");
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pki.pem("ca.crt")),
    };
    let client = redis::Client::build_with_tls(server.url(), certificates).expect("a TLS client");
    let manager = client.get_connection_manager().await.expect("over TLS");
    let error = RedisCache::with_connection(client, manager)
        .tls_root_certificate(pki.pem("ca.crt"))
        .await
        .expect_err("the client has its own TLS settings");
    assert!(
        matches!(
            error,
            ConnectError::InvalidOption {
                option: "tls_root_certificate",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_whose_ca_is_not_trusted_is_refused_with_a_typed_error() {
    let Some((_pki, server)) = setup("tls_untrusted", ClientCertificates::Optional).await else {
        return;
    };
    // Only the system's CAs are trusted: not the test's.
    let transport = RedisTransport::connect(server.url())
        .response_timeout(Duration::from_secs(2))
        .await
        .expect_err("the server's certificate is signed by an unknown CA");
    let stores = RedisStores::connect(server.url())
        .response_timeout(Duration::from_secs(2))
        .await
        .expect_err("the server's certificate is signed by an unknown CA");
    let cache = RedisCache::connect(server.url())
        .await
        .expect_err("the server's certificate is signed by an unknown CA");
    for error in [transport, stores, cache] {
        assert!(
            matches!(error, ConnectError::TlsHandshake { .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains("certificate is not trusted")
                && shown.contains(&format!("127.0.0.1:{}", server.port))
                && shown.contains("tls_root_certificate"),
            "{shown}"
        );
        // The client's own words stay reachable.
        assert!(
            everything_about(&error).contains("UnknownIssuer"),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn mutual_tls_works_with_a_client_certificate_and_is_refused_without() {
    let Some((pki, server)) = setup("tls_mutual", ClientCertificates::Required).await else {
        return;
    };
    let transport = RedisTransport::connect(server.url())
        .prefix(unique("tls-mutual-"))
        .tls_root_certificate(pki.pem("ca.crt"))
        .tls_client_auth(pki.pem("client.crt"), pki.pem("client.key"))
        .await
        .expect("the server accepts the client certificate");
    let app = Catga::builder()
        .transport(transport)
        .service("caller")
        .handlers(|_| false)
        .build()
        .unwrap();
    app.publish(Shipped { order: 1 })
        .await
        .expect("an event published over mutual TLS");
    let stores = RedisStores::connect(server.url())
        .tls_root_certificate(pki.pem("ca.crt"))
        .tls_client_auth(pki.pem("client.crt"), pki.pem("client.key"))
        .await
        .expect("the stores connect with the client certificate");
    assert_eq!(stores.prefix(), "catga");

    let error = RedisTransport::connect(server.url())
        .tls_root_certificate(pki.pem("ca.crt"))
        .response_timeout(Duration::from_secs(2))
        .await
        .expect_err("no client certificate");
    assert!(
        matches!(error, ConnectError::TlsHandshake { .. }),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("requires a client certificate") && shown.contains("tls_client_auth"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_bad_certificate_or_key_is_a_typed_error_that_never_shows_the_key() {
    let Some(pki) = Pki::new("tls_bad_pem") else {
        return;
    };
    // Nothing listens there: the options are refused before anything is sent.
    let url = "rediss://127.0.0.1:1";

    let error = RedisTransport::connect(url)
        .tls_root_certificate(b"not a certificate".to_vec())
        .await
        .expect_err("no certificate in the PEM");
    assert!(
        matches!(
            error,
            ConnectError::InvalidTls {
                option: "tls_root_certificate",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );

    // The server's key with the client's certificate: a key that is not the certificate's.
    let secrets = body_lines(&pki, "server.key");
    assert!(!secrets.is_empty());
    let builder = RedisStores::connect(url)
        .tls_root_certificate(pki.pem("ca.crt"))
        .tls_client_auth(pki.pem("client.crt"), pki.pem("server.key"));
    let debug = format!("{builder:?}");
    let error = builder.await.expect_err("the key is not the certificate's");
    assert!(
        matches!(
            error,
            ConnectError::InvalidTls {
                option: "tls_client_auth",
                ..
            }
        ),
        "{error:?}"
    );
    let shown = everything_about(&error);
    assert!(
        shown.contains("the key cannot be used with the certificate"),
        "{shown}"
    );
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "the key in: {shown}");
        assert!(!debug.contains(secret.as_str()), "the key in: {debug}");
    }
    assert!(debug.contains("client_auth: Some(\"***\")"), "{debug}");

    // A key PEM that holds no key (a certificate).
    let error = RedisTransport::connect(url)
        .tls_client_auth(pki.pem("client.crt"), pki.pem("client.crt"))
        .await
        .expect_err("no key");
    assert!(
        error.to_string().contains("holds no private key"),
        "{error}"
    );

    // Turning verification off is not offered.
    let error = RedisTransport::connect(format!("{url}/#insecure"))
        .await
        .expect_err("`#insecure` is refused");
    assert!(
        matches!(error, ConnectError::InvalidTls { option: "url", .. }),
        "{error:?}"
    );

    // A certificate for a URL that does not ask for TLS would silently not be used.
    let error = RedisTransport::connect("redis://127.0.0.1:1")
        .tls_root_certificate(pki.pem("ca.crt"))
        .await
        .expect_err("`redis://` with a TLS option");
    assert!(error.to_string().contains("rediss://"), "{error}");
}

/// A Redis Cluster that speaks only TLS (`--tls-cluster yes`, nodes on TLS ports only): the
/// stores and the transport connect with the CA trusted, the certificates reach every node
/// (the cluster connection's and the connections of their own that blocking reads and reply
/// waits open to one node), and without the CA the handshake failure is typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_reached_over_tls_with_the_ca_trusted() {
    if !common::private_cluster::available("tls_cluster") {
        return;
    }
    let Some(pki) = Pki::new("tls_cluster") else {
        return;
    };
    // The nodes present their certificate to each other as clients too (the cluster bus
    // asks for one), so it is good for both.
    pki.leaf(
        "node",
        "127.0.0.1",
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
    );
    let (cert, key, ca) = (
        pki.path("node.crt"),
        pki.path("node.key"),
        pki.path("ca.crt"),
    );
    let cluster = tokio::task::spawn_blocking(move || {
        common::private_cluster::PrivateCluster::start_tls(3, &cert, &key, &ca)
    })
    .await
    .expect("the TLS cluster starts");
    assert!(
        cluster
            .urls()
            .iter()
            .all(|url| url.starts_with("rediss://"))
    );

    let untrusted = RedisStores::connect_cluster(cluster.urls())
        .await
        .expect_err("the CA is not trusted");
    assert!(
        matches!(untrusted, ConnectError::TlsHandshake { .. }),
        "{untrusted:?}"
    );

    let prefix = unique("tls-cluster-");
    let stores = RedisStores::connect_cluster(cluster.urls())
        .prefix(prefix.clone())
        .tls_root_certificate(pki.pem("ca.crt"))
        .await
        .expect("the stores connect to the cluster over TLS");
    use catga_core::store::event::{EventStore, NewEvent};
    stores
        .events()
        .append("order-1", 0, vec![NewEvent::new("Placed", b"{}".to_vec())])
        .await
        .expect("append over TLS");

    let connect = || {
        RedisTransport::connect_cluster(cluster.urls())
            .prefix(prefix.clone())
            .fetch_wait(Duration::from_millis(200))
            .tls_root_certificate(pki.pem("ca.crt"))
    };
    let state = Arc::new(Shipping::default());
    let shipping = Catga::builder()
        .state_arc(state.clone())
        .transport(connect().await.expect("connects over TLS"))
        .service("shipping")
        .handlers(|h| h.name.starts_with("tls::shipping::"))
        .build()
        .unwrap();
    let serving = shipping.serve().await.expect("serve over TLS");
    let caller = Catga::builder()
        .transport(connect().await.expect("connects over TLS"))
        .service("caller")
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(caller.send(Ship { order: 3 }).await.expect("a reply"), 30);
    caller
        .publish(Shipped { order: 4 })
        .await
        .expect("published");
    eventually("the event is handled", || async {
        state.shipped.load(Ordering::SeqCst) == 4
    })
    .await;
    serving.shutdown().await;
}
