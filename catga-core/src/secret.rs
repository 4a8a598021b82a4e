//! Keeping credentials out of errors, logs and `Debug` output.
//!
//! Adapters are configured with connection URLs that may carry credentials
//! (`nats://user:password@host`, `nats://token@host`, `redis://:password@host/0`,
//! `redis+unix:///run/redis.sock?pass=…`), and they name the server in their errors and logs,
//! where anyone reading them would also read the password. Every catga crate shows a URL only
//! through [`redact_url`], so "what is hidden" has one definition, tested once:
//!
//! - the userinfo (everything between `://` and the last `@`) becomes `***`, username
//!   included, since a URL's username is a token for some servers (`nats://token@host`);
//! - the value of a query parameter whose name looks like a secret ([`is_secret_name`]:
//!   `password`, `pass`, `token`, `secret`, `key`, `auth`, `credentials`, `user`, …) becomes
//!   `***`;
//! - everything else (scheme, host, port, path, other parameters, fragment) is kept, so the
//!   message still says which server was meant.
//!
//! It lives in `catga-core`, not in each adapter, because every adapter needs the same rule
//! and a second copy would drift; it is one pure function over `&str` with no dependency, so
//! the core stays as light as the design asks (a crate of its own for it would cost more
//! than the function). Secrets given as builder options rather than in the URL are the
//! adapter's to hide: its builder's `Debug` prints [`REDACTED`] for them.
//!
//! ```
//! use catga_core::secret::redact_url;
//!
//! assert_eq!(redact_url("nats://user:s3cret@127.0.0.1:4222"), "nats://***@127.0.0.1:4222");
//! assert_eq!(redact_url("redis://host/0?password=s3cret"), "redis://host/0?password=***");
//! assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
//! ```

use std::borrow::Cow;

/// What a secret is shown as.
pub const REDACTED: &str = "***";

/// `url` with its credentials replaced by [`REDACTED`]: the userinfo, and the values of
/// query parameters whose names look like secrets (see the [module docs](self)). Borrowed
/// when there was nothing to hide.
///
/// The userinfo ends at the **last** `@`: a password holding an unencoded `@`, `/`, `?` or
/// `#` (which URL parsers would misread) is still hidden whole. An `@` later in the URL (a
/// query value such as `?name=a@b`) hides more than needed, never less. A string without
/// `scheme://` is read as an authority (`user:password@host:4222`, which NATS accepts).
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let authority = authority_start(url);
    let (userinfo, rest) = match url[authority..].rfind('@') {
        Some(at) => (true, &url[authority + at..]),
        None => (false, &url[authority..]),
    };
    let rest_redacted = redact_query(rest);
    if !userinfo && matches!(rest_redacted, Cow::Borrowed(_)) {
        return Cow::Borrowed(url);
    }
    let mut shown = String::with_capacity(url.len());
    shown.push_str(&url[..authority]);
    if userinfo {
        shown.push_str(REDACTED);
    }
    shown.push_str(&rest_redacted);
    Cow::Owned(shown)
}

/// Whether a parameter or option named `name` holds a secret: its name contains (ignoring
/// case) `pass`, `pwd`, `token`, `secret`, `key`, `auth`, `cred`, `jwt`, `seed`, `sig` or
/// `session`, or it is `user`/`username` (which some URLs carry as a parameter, e.g. a Redis
/// socket's `?user=`). Generous on purpose: hiding a harmless value costs a debugging
/// detail, showing a secret costs the secret.
pub fn is_secret_name(name: &str) -> bool {
    const PARTS: [&str; 11] = [
        "pass", "pwd", "token", "secret", "key", "auth", "cred", "jwt", "seed", "sig", "session",
    ];
    let name = name.to_ascii_lowercase();
    name == "user" || name == "username" || PARTS.iter().any(|part| name.contains(part))
}

/// Where the authority starts: after `scheme://` when the string starts with a scheme, else
/// at the start.
fn authority_start(url: &str) -> usize {
    let Some(end) = url.find("://") else {
        return 0;
    };
    let scheme = &url[..end];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid { end + 3 } else { 0 }
}

/// `rest` (host onwards) with the values of secret query parameters hidden.
fn redact_query(rest: &str) -> Cow<'_, str> {
    let Some(question) = rest.find('?') else {
        return Cow::Borrowed(rest);
    };
    let query_start = question + 1;
    let query_end = rest[query_start..]
        .find('#')
        .map_or(rest.len(), |i| query_start + i);
    let query = &rest[query_start..query_end];
    let secret = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(name, _)| is_secret_name(name))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(rest);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => Cow::Owned(format!("{name}={REDACTED}")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(format!(
        "{}{}{}",
        &rest[..query_start],
        pairs.join("&"),
        &rest[query_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn userinfo_is_hidden_with_or_without_a_password() {
        let cases = [
            (
                "nats://user:secretpass@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            (
                "nats://secrettoken@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            ("redis://:secretpass@host:6379/0", "redis://***@host:6379/0"),
            ("redis://user:@host", "redis://***@host"),
            (
                "rediss://user:secretpass@cache.example.com:6380/2",
                "rediss://***@cache.example.com:6380/2",
            ),
            (
                "tls://user:secretpass@nats.example.com",
                "tls://***@nats.example.com",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn encoded_and_unencoded_special_characters_in_the_password_stay_hidden() {
        let cases = [
            (
                "redis://us%40er:p%40ss%3Aw%2Fd@host/1",
                "redis://***@host/1",
            ),
            // Unencoded, which parsers misread: the last `@` still ends the userinfo.
            ("redis://:p@ss@host/1", "redis://***@host/1"),
            ("nats://user:pa/ss@host:4222", "nats://***@host:4222"),
            ("nats://user:pa?ss#w@host:4222", "nats://***@host:4222"),
            ("nats://üser:pässwörd@hôst:4222", "nats://***@hôst:4222"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn ipv6_hosts_are_kept() {
        assert_eq!(
            redact_url("redis://user:secretpass@[::1]:6379/0"),
            "redis://***@[::1]:6379/0"
        );
        assert_eq!(redact_url("nats://[::1]:4222"), "nats://[::1]:4222");
        assert_eq!(
            redact_url("nats://secrettoken@[fe80::1%25eth0]:4222"),
            "nats://***@[fe80::1%25eth0]:4222"
        );
    }

    #[test]
    fn secret_query_parameters_are_hidden_and_others_kept() {
        let cases = [
            (
                "redis://host/0?password=secretpass",
                "redis://host/0?password=***",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&user=alice&pass=secretpass",
                "redis+unix:///run/redis.sock?db=1&user=***&pass=***",
            ),
            (
                "nats://host:4222?token=secrettoken&name=svc#frag",
                "nats://host:4222?token=***&name=svc#frag",
            ),
            (
                "x://h?Auth_Token=a&API_KEY=b&client_secret=c&protocol=resp3",
                "x://h?Auth_Token=***&API_KEY=***&client_secret=***&protocol=resp3",
            ),
            (
                "redis://u:secretpass@h/0?password=secretpass",
                "redis://***@h/0?password=***",
            ),
            // A parameter without a value has nothing to hide.
            ("rediss://h/0?insecure&token", "rediss://h/0?insecure&token"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn a_url_without_credentials_is_borrowed_unchanged() {
        for url in [
            "nats://127.0.0.1:4222",
            "redis://127.0.0.1:6379/0?protocol=resp3",
            "rediss://cache.example.com/0#insecure",
            "127.0.0.1:4222",
            "not a url",
            "",
        ] {
            let shown = redact_url(url);
            assert!(matches!(shown, Cow::Borrowed(_)), "{url}");
            assert_eq!(shown, url);
        }
    }

    #[test]
    fn an_address_without_a_scheme_is_read_as_an_authority() {
        assert_eq!(redact_url("user:secretpass@host:4222"), "***@host:4222");
        assert_eq!(redact_url("secrettoken@host"), "***@host");
    }

    #[test]
    fn secret_names_are_recognised_whatever_their_case() {
        for name in [
            "password",
            "PASS",
            "passwd",
            "pwd",
            "token",
            "auth_token",
            "nkey",
            "seed",
            "creds",
            "jwt",
            "user",
            "Username",
            "api-key",
            "sig",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["db", "protocol", "name", "timeout", "insecure"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    /// A password: a marker no host or scheme below contains, then any printable text
    /// (unencoded `@`, `/`, `?`, `#`, `:` included).
    fn password() -> impl Strategy<Value = String> {
        "[ -~]{0,24}".prop_map(|tail| format!("SECRET{tail}"))
    }

    proptest! {
        #[test]
        fn no_password_survives(
            scheme in "(nats|tls|redis|rediss|redis\\+unix)",
            user in "[a-z%0-9]{0,8}",
            password in password(),
            host in "([a-z]{1,10}|127\\.0\\.0\\.1|\\[::1\\])",
            port in 1u16..,
            name in "(password|pass|token|auth|secret|api_key)",
        ) {
            let with_userinfo = format!("{scheme}://{user}:{password}@{host}:{port}/0");
            let shown = redact_url(&with_userinfo);
            prop_assert!(!shown.contains("SECRET"), "{with_userinfo} -> {shown}");
            let server = format!("@{host}:{port}/0");
            prop_assert!(shown.ends_with(&server), "{shown}");

            let token = format!("{scheme}://{password}@{host}");
            prop_assert!(!redact_url(&token).contains("SECRET"));

            let encoded: String = password.bytes().map(|b| format!("%{b:02X}")).collect();
            let in_query = format!("{scheme}://{host}:{port}/0?db=1&{name}={encoded}");
            let shown = redact_url(&in_query);
            prop_assert!(!shown.contains(&encoded), "{in_query} -> {shown}");
            let kept = format!("{scheme}://{host}:{port}/0?db=1&{name}=***");
            prop_assert_eq!(shown, kept.as_str());
        }

        #[test]
        fn a_url_without_secrets_is_unchanged(
            scheme in "(nats|redis)",
            host in "[a-z]{1,10}",
            port in 1u16..,
            db in 0u8..16,
        ) {
            let url = format!("{scheme}://{host}:{port}/{db}?protocol=resp3#insecure");
            prop_assert_eq!(redact_url(&url), url.as_str());
        }
    }
}
