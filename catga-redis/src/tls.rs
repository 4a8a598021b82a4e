//! TLS to the server (`rediss://`), with the `tls` feature: which certificate authorities the
//! client trusts, which certificate it presents, and the rustls crypto provider.
//!
//! The URL decides whether a connection uses TLS: `rediss://host:port/db` does, `redis://`
//! does not. A TLS connection trusts the system's certificate authorities (read by
//! `rustls-native-certs`, as the redis crate does) unless CA certificates are given
//! ([`RedisConnect::tls_root_certificate`](crate::RedisConnect::tls_root_certificate)), which
//! then are the only ones trusted; a client certificate and key
//! ([`RedisConnect::tls_client_auth`](crate::RedisConnect::tls_client_auth)) answer a server
//! that asks for one (`tls-auth-clients yes`). The same options apply to every connection a
//! builder opens: the shared one, those for blocking commands, replicas.
//!
//! Certificates are checked when the builder is awaited, before anything is sent; a bad one
//! is a typed [`ConnectError::InvalidTls`], never a panic, and no error or `Debug` output
//! shows a key. Verifying the server's certificate cannot be turned off: redis's `#insecure`
//! URL fragment is refused. Without the feature, `rediss://` is refused with
//! [`ConnectError::TlsUnsupported`].

use std::fmt;

use redis::ConnectionInfo;

use crate::error::ConnectError;

/// The TLS options of a builder: CA certificates to trust instead of the system's, and a
/// client certificate, each as PEM. Empty without the `tls` feature.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    /// Each PEM given to `tls_root_certificate`, in order.
    #[cfg(feature = "tls")]
    roots: Vec<Vec<u8>>,
    /// The certificate chain and private key given to `tls_client_auth`.
    #[cfg(feature = "tls")]
    client_auth: Option<ClientAuth>,
}

/// A client certificate chain and its private key, as PEM.
#[cfg(feature = "tls")]
#[derive(Clone)]
struct ClientAuth {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for TlsOptions {
    /// How many CA PEMs were given and whether a client certificate was: never a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("TlsOptions");
        #[cfg(feature = "tls")]
        out.field("root_certificates", &self.roots.len()).field(
            "client_auth",
            &self
                .client_auth
                .as_ref()
                .map(|_| catga_core::secret::REDACTED),
        );
        out.finish()
    }
}

impl TlsOptions {
    /// A client for `info` (`shown` is its URL with credentials hidden), with these options'
    /// certificates when it asks for TLS.
    ///
    /// # Errors
    /// [`ConnectError::InvalidUrl`] when the client refuses `info`; with the `tls` feature,
    /// [`ConnectError::InvalidTls`] for a certificate or key it cannot use, for options
    /// given with a URL that does not ask for TLS, and for `#insecure`.
    pub(crate) fn client(
        &self,
        info: ConnectionInfo,
        shown: &str,
    ) -> Result<redis::Client, ConnectError> {
        #[cfg(feature = "tls")]
        if let Some(client) = self.tls_client(&info, shown)? {
            return Ok(client);
        }
        redis::Client::open(info).map_err(|source| ConnectError::InvalidUrl {
            url: shown.to_string(),
            source,
        })
    }

    /// `builder` (a Redis Cluster's client) with these options' certificates, for every node
    /// it connects to. The options are checked against the first node's URL by
    /// [`client`](Self::client) first, which the caller does.
    ///
    /// # Errors
    /// With the `tls` feature, [`ConnectError::InvalidTls`] for a certificate or key it
    /// cannot use.
    pub(crate) fn cluster(
        &self,
        builder: redis::cluster::ClusterClientBuilder,
        shown: &str,
    ) -> Result<redis::cluster::ClusterClientBuilder, ConnectError> {
        #[cfg(feature = "tls")]
        return self.cluster_certificates(builder, shown);
        #[cfg(not(feature = "tls"))]
        {
            let _ = shown;
            Ok(builder)
        }
    }
}

#[cfg(not(feature = "tls"))]
impl TlsOptions {
    /// The name of the first option set: none, without the `tls` feature.
    pub(crate) fn first_option(&self) -> Option<&'static str> {
        None
    }
}

#[cfg(feature = "tls")]
pub(crate) use enabled::handshake_failure;

#[cfg(feature = "tls")]
mod enabled {
    use std::error::Error;
    use std::io;
    use std::sync::{Arc, Once};

    use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, RedisError, TlsCertificates};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{AlertDescription, CertificateError, RootCertStore};

    use super::{ClientAuth, TlsOptions};
    use crate::error::ConnectError;

    const ROOT: &str = "tls_root_certificate";
    const CLIENT: &str = "tls_client_auth";
    const ROOT_HELP: &str = "give the CA certificate as PEM text (`-----BEGIN CERTIFICATE-----`…), such as the server's `tls-ca-cert-file`";
    const CLIENT_HELP: &str = "give the client certificate (`-----BEGIN CERTIFICATE-----`…) and its private key (`-----BEGIN PRIVATE KEY-----`…) as PEM text";

    impl TlsOptions {
        /// Trusts the CA certificates in `pem` (in addition to any given before, instead of
        /// the system's).
        pub(crate) fn add_root_certificate(&mut self, pem: Vec<u8>) {
            self.roots.push(pem);
        }

        /// Presents `cert_pem` (a chain, the client's certificate first) with its private
        /// key `key_pem` to a server that asks for a certificate.
        pub(crate) fn set_client_auth(&mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) {
            self.client_auth = Some(ClientAuth { cert_pem, key_pem });
        }

        /// The name of the first option set, if any.
        pub(crate) fn first_option(&self) -> Option<&'static str> {
            if !self.roots.is_empty() {
                Some(ROOT)
            } else if self.client_auth.is_some() {
                Some(CLIENT)
            } else {
                None
            }
        }

        /// A TLS client for `info` if it asks for TLS (`rediss://`), else `None` (a plain
        /// client is then built by the caller).
        pub(super) fn tls_client(
            &self,
            info: &ConnectionInfo,
            shown: &str,
        ) -> Result<Option<redis::Client>, ConnectError> {
            let invalid = |option, problem, help| ConnectError::InvalidTls {
                url: shown.to_string(),
                option,
                problem,
                help,
                source: None,
            };
            match info.addr() {
                ConnectionAddr::TcpTls { insecure: true, .. } => {
                    return Err(invalid(
                        "url",
                        "`#insecure` turns off verifying the server's certificate, which catga-redis does not do",
                        "remove `#insecure` and trust the server's CA with `tls_root_certificate(pem)`",
                    ));
                }
                ConnectionAddr::TcpTls { .. } => {}
                _ => {
                    return match self.first_option() {
                        Some(option) => Err(invalid(
                            option,
                            "the url does not ask for TLS, so the certificate would not be used",
                            "write `rediss://host:port/db` to connect with TLS",
                        )),
                        None => Ok(None),
                    };
                }
            }
            let provider = crypto_provider();
            let certificates = self.certificates(&provider, shown)?;
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(info.clone(), certificates),
                None => redis::Client::open(info.clone()),
            };
            tracing::debug!(target: "catga::redis", url = %shown,
                root_certificates = self.roots.len(), client_auth = self.client_auth.is_some(),
                "TLS client");
            client.map(Some).map_err(|source| ConnectError::InvalidTls {
                url: shown.to_string(),
                option: self.first_option().unwrap_or("url"),
                problem: "the redis client refused the TLS settings",
                help: "see the source of this error",
                source: Some(Box::new(source)),
            })
        }

        /// `builder` with the certificates, if any option was given.
        pub(super) fn cluster_certificates(
            &self,
            builder: redis::cluster::ClusterClientBuilder,
            shown: &str,
        ) -> Result<redis::cluster::ClusterClientBuilder, ConnectError> {
            let provider = crypto_provider();
            Ok(match self.certificates(&provider, shown)? {
                Some(certificates) => builder.certs(certificates),
                None => builder,
            })
        }

        /// The certificates for the redis client, each checked the way the client will use
        /// it; `None` when no option was given (the system's CAs, no client certificate).
        fn certificates(
            &self,
            provider: &CryptoProvider,
            shown: &str,
        ) -> Result<Option<TlsCertificates>, ConnectError> {
            let invalid = |option, problem, help, source| ConnectError::InvalidTls {
                url: shown.to_string(),
                option,
                problem,
                help,
                source,
            };
            let mut root_cert = None;
            for pem in &self.roots {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        invalid(ROOT, "the PEM does not parse", ROOT_HELP, Some(Box::new(e)))
                    })?;
                if certs.is_empty() {
                    return Err(invalid(
                        ROOT,
                        "the PEM holds no certificate",
                        ROOT_HELP,
                        None,
                    ));
                }
                let mut store = RootCertStore::empty();
                for cert in certs {
                    store.add(cert).map_err(|e| {
                        invalid(
                            ROOT,
                            "a certificate in the PEM is not a usable CA certificate",
                            ROOT_HELP,
                            Some(Box::new(e)),
                        )
                    })?;
                }
                let bundle: &mut Vec<u8> = root_cert.get_or_insert_with(Vec::new);
                bundle.extend_from_slice(pem);
                bundle.push(b'\n');
            }
            let client_tls = match &self.client_auth {
                None => None,
                Some(ClientAuth { cert_pem, key_pem }) => {
                    let chain = CertificateDer::pem_slice_iter(cert_pem)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            invalid(
                                CLIENT,
                                "the certificate PEM does not parse",
                                CLIENT_HELP,
                                Some(Box::new(e)),
                            )
                        })?;
                    if chain.is_empty() {
                        return Err(invalid(
                            CLIENT,
                            "the certificate PEM holds no certificate",
                            CLIENT_HELP,
                            None,
                        ));
                    }
                    // The parser's own error is left out: some of its messages quote the
                    // input, and this input is a private key.
                    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
                        let problem = match e {
                            pem::Error::NoItemsFound => "the key PEM holds no private key",
                            _ => "the key PEM does not parse",
                        };
                        invalid(CLIENT, problem, CLIENT_HELP, None)
                    })?;
                    // What rustls does with them when connecting: loads the key (a kind it
                    // supports?) and checks that it belongs to the certificate.
                    rustls::sign::CertifiedKey::from_der(chain, key, provider).map_err(|e| {
                        invalid(
                            CLIENT,
                            "the key cannot be used with the certificate",
                            "give the private key of the first certificate in the chain (RSA, ECDSA or Ed25519)",
                            Some(Box::new(e)),
                        )
                    })?;
                    Some(ClientTlsConfig {
                        client_cert: cert_pem.clone(),
                        client_key: key_pem.clone(),
                    })
                }
            };
            if root_cert.is_none() && client_tls.is_none() {
                return Ok(None);
            }
            Ok(Some(TlsCertificates {
                client_tls,
                root_cert,
            }))
        }
    }

    /// The process's rustls crypto provider, installing `ring`'s if none is installed yet.
    ///
    /// The redis client builds its TLS configuration with the process-level provider, which
    /// rustls picks by itself only when exactly one provider feature is enabled in the whole
    /// program; installing one here means connecting never panics for want of one. An
    /// application that installed its own (aws-lc-rs, say) before connecting keeps it.
    fn crypto_provider() -> Arc<CryptoProvider> {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            if CryptoProvider::get_default().is_none()
                && rustls::crypto::ring::default_provider()
                    .install_default()
                    .is_ok()
            {
                tracing::debug!(target: "catga::redis",
                    "installed rustls's ring crypto provider as the process default");
            }
        });
        // Installed above, by this process or by another thread that won the race.
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
    }

    /// Why a connection failed in its TLS handshake, as a problem and a help line, if it did.
    pub(crate) fn handshake_failure(error: &RedisError) -> Option<(&'static str, &'static str)> {
        let tls = rustls_error(error)?;
        const NOT_TRUSTED: (&str, &str) = (
            "its certificate is not trusted",
            "trust the CA that signed it with `tls_root_certificate(pem)`, or add that CA to the system's certificates",
        );
        Some(match tls {
            rustls::Error::InvalidCertificate(reason) => match reason {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => (
                    "its certificate is not valid for this host name",
                    "connect with a host name or IP address the certificate lists (its subjectAltName)",
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => (
                    "its certificate has expired or is not valid yet",
                    "renew the server's certificate, or check this machine's clock",
                ),
                _ => NOT_TRUSTED,
            },
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => (
                "the server requires a client certificate",
                "give one with `tls_client_auth(cert_pem, key_pem)`",
            ),
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::AccessDenied,
            ) => (
                "the server refused the client certificate",
                "give a certificate signed by a CA the server trusts (its `tls-ca-cert-file`)",
            ),
            _ => (
                "the client and the server did not agree on TLS",
                "check that the port serves TLS (Redis's `tls-port`) with TLS 1.2 or 1.3",
            ),
        })
    }

    /// The rustls error behind `error`. The redis client keeps an I/O error behind an `Arc`,
    /// and an I/O error does not list what it wraps among its sources, so both are opened.
    fn rustls_error(error: &RedisError) -> Option<&rustls::Error> {
        let mut next: Option<&(dyn Error + 'static)> = Some(error);
        while let Some(error) = next {
            if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            if let Some(tls) = error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(tls);
            }
            next = match error.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
                Some(shared) => Some(&**shared),
                None => error.source(),
            };
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn options() -> TlsOptions {
            TlsOptions::default()
        }

        fn info(url: &str) -> ConnectionInfo {
            redis::IntoConnectionInfo::into_connection_info(url).expect("a redis url")
        }

        fn refused(options: &TlsOptions, url: &str) -> ConnectError {
            options.tls_client(&info(url), url).expect_err("refused")
        }

        #[test]
        fn insecure_is_refused() {
            let err = refused(&options(), "rediss://127.0.0.1:6380/#insecure");
            assert!(
                matches!(err, ConnectError::InvalidTls { option: "url", .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("#insecure"), "{err}");
        }

        #[test]
        fn options_with_a_plain_url_are_refused() {
            let mut options = options();
            options.add_root_certificate(b"anything".to_vec());
            let err = refused(&options, "redis://127.0.0.1:6379");
            assert!(
                matches!(err, ConnectError::InvalidTls { option: ROOT, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("rediss://"), "{err}");
        }

        #[test]
        fn a_root_pem_without_a_certificate_is_refused() {
            for pem in [&b""[..], b"not a pem", b"-----BEGIN CERTIFICATE-----\nAAAA"] {
                let mut options = options();
                options.add_root_certificate(pem.to_vec());
                let err = refused(&options, "rediss://127.0.0.1:6380");
                assert!(
                    matches!(err, ConnectError::InvalidTls { option: ROOT, .. }),
                    "{err:?}"
                );
            }
        }

        #[test]
        fn a_bad_key_is_refused_without_showing_it() {
            let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0a2V5bWF0ZXJpYWw!!\n-----END PRIVATE KEY-----\n";
            let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
            let mut options = options();
            options.set_client_auth(cert.into(), secret.into());
            let err = refused(&options, "rediss://127.0.0.1:6380");
            assert!(
                matches!(err, ConnectError::InvalidTls { option: CLIENT, .. }),
                "{err:?}"
            );
            let shown = format!("{err} {err:?} {:?}", err.source());
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
            let debug = format!("{options:?}");
            assert!(!debug.contains("c2VjcmV0"), "{debug}");
            assert!(debug.contains("client_auth: Some(\"***\")"), "{debug}");
        }

        #[test]
        fn a_plain_url_without_options_is_left_to_the_plain_client() {
            let client = options()
                .tls_client(&info("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379")
                .expect("no error");
            assert!(client.is_none());
        }

        #[test]
        fn a_handshake_error_is_found_behind_the_io_error() {
            let io = io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            );
            let err = RedisError::from(io);
            let (problem, _) = handshake_failure(&err).expect("a TLS failure");
            assert_eq!(problem, "its certificate is not trusted");
            let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
            assert!(handshake_failure(&refused).is_none());
        }
    }
}
