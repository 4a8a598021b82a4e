//! Authenticating to the server: credentials from the URL and from the builder's options,
//! handed to the client as options, never inside the URL.
//!
//! The client (async-nats 0.51) does not read credentials from a URL: it would connect
//! without them, and it logs the server address it tries, userinfo included, at `debug`. So
//! the URL's userinfo is taken out here and given as the options it means
//! (`nats://user:password@host` → user and password, `nats://token@host` → token, as the Go
//! client and the `nats` CLI read it), and the client only ever sees `nats://host`.

use std::fmt;
use std::path::PathBuf;

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use catga_core::secret::{REDACTED, redact_url};
use percent_encoding::percent_decode_str;

use crate::error::ConnectError;

/// The credentials set on the builder. Its `Debug` shows which are set, never their values.
#[derive(Clone, Default)]
pub(crate) struct Auth {
    pub user_password: Option<(String, String)>,
    pub token: Option<String>,
    pub nkey: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |set: bool| if set { Some(REDACTED) } else { None };
        f.debug_struct("Auth")
            .field("user_password", &hidden(self.user_password.is_some()))
            .field("token", &hidden(self.token.is_some()))
            .field("nkey", &hidden(self.nkey.is_some()))
            // A path is not a secret; the file's contents (a JWT and a seed) are never read
            // into anything printable.
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// Credentials a URL carried in its userinfo, percent-decoded.
enum UrlCredentials {
    UserPassword(String, String),
    Token(String),
}

/// The server address without its userinfo, and the credentials the userinfo held.
///
/// # Errors
/// [`ConnectError::InvalidUrl`] (the URL shown redacted) when `url` is not a NATS server URL
/// or its userinfo is not UTF-8 once decoded.
fn split_url(url: &str) -> Result<(ServerAddr, Option<UrlCredentials>), ConnectError> {
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| ConnectError::InvalidUrl {
        url: redact_url(url).into_owned(),
        source: async_nats::ConnectError::with_source(ConnectErrorKind::ServerParse, source),
    };
    // The parse errors of `url` and async-nats name what is wrong, never the input.
    let address: ServerAddr = url.parse().map_err(|e: std::io::Error| invalid(e.into()))?;
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| invalid("the URL's userinfo is not UTF-8 once percent-decoded".into()))
    };
    let credentials = match (address.username(), address.password()) {
        (Some(user), Some(password)) => Some(UrlCredentials::UserPassword(
            decode(user)?,
            decode(password)?,
        )),
        (Some(token), None) => Some(UrlCredentials::Token(decode(token)?)),
        // `nats://:password@host`: a password without a user is no NATS credential.
        (None, Some(password)) => Some(UrlCredentials::UserPassword(
            String::new(),
            decode(password)?,
        )),
        (None, None) => None,
    };
    let mut bare = address.into_inner();
    // Only fails for URLs that cannot have userinfo at all (no host), which `parse` refused.
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    let address = ServerAddr::from_url(bare).map_err(|e: std::io::Error| invalid(e.into()))?;
    Ok((address, credentials))
}

impl Auth {
    /// The server address to give the client (without userinfo) and `options` with every
    /// credential set: the builder's, and the URL's unless the builder set a user and
    /// password or a token, which take precedence.
    ///
    /// # Errors
    /// [`ConnectError::InvalidUrl`] for a URL that does not parse;
    /// [`ConnectError::Credentials`] when the credentials file cannot be read or parsed.
    pub async fn apply(
        &self,
        url: &str,
        mut options: ConnectOptions,
    ) -> Result<(ServerAddr, ConnectOptions), ConnectError> {
        let (address, from_url) = split_url(url)?;
        let explicit = self.user_password.is_some() || self.token.is_some();
        match from_url {
            Some(UrlCredentials::UserPassword(user, password)) if !explicit => {
                options = options.user_and_password(user, password);
            }
            Some(UrlCredentials::Token(token)) if !explicit => options = options.token(token),
            _ => {}
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &self.nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(path) = &self.credentials_file {
            options = options.credentials_file(path).await.map_err(|source| {
                ConnectError::Credentials {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Ok((address, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<UrlCredentials>) {
        let (address, credentials) = split_url(url).unwrap();
        (address.into_inner().to_string(), credentials)
    }

    #[test]
    fn the_userinfo_leaves_the_url_and_becomes_credentials() {
        let (address, credentials) = split("nats://us%40er:p%40ss%3Aw@127.0.0.1:4222");
        assert_eq!(address, "nats://127.0.0.1:4222");
        assert!(matches!(credentials,
            Some(UrlCredentials::UserPassword(u, p)) if u == "us@er" && p == "p@ss:w"));

        let (address, credentials) = split("tls://s3cr3t@[::1]:4443");
        assert_eq!(address, "tls://[::1]:4443");
        assert!(matches!(credentials, Some(UrlCredentials::Token(t)) if t == "s3cr3t"));

        let (address, credentials) = split("127.0.0.1:4222");
        assert_eq!(address, "nats://127.0.0.1:4222");
        assert!(credentials.is_none());
    }

    #[test]
    fn a_bad_url_is_reported_without_its_credentials() {
        for url in [
            "http://user:secretpass@host",
            "nats://user:secretpass@host:notaport",
        ] {
            let error = split_url(url).err().unwrap();
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("secretpass"), "{shown}");
            assert!(shown.contains("***@host"), "{shown}");
        }
    }

    #[test]
    fn the_debug_of_the_options_names_them_without_their_values() {
        let auth = Auth {
            user_password: Some(("alice".into(), "secretpass".into())),
            token: Some("secrettoken".into()),
            nkey: Some("SUSECRETSEED".into()),
            credentials_file: Some("/etc/nats/app.creds".into()),
        };
        let shown = format!("{auth:?}");
        for secret in ["alice", "secretpass", "secrettoken", "SECRETSEED"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("token: Some(\"***\")"), "{shown}");
    }
}
