//! Setting up a [`NatsLeaseStore`]: the builder its constructors return, awaited to open (or
//! create) the lease bucket.

use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use catga_core::secret::redact_url;
use catga_core::transport::options::InvalidOption;
use futures::future::BoxFuture;

use super::NatsLeaseStore;
use super::error::NatsLeaseError;
use crate::auth::Auth;
use crate::error::ConnectError;

/// The lease bucket's name unless [`NatsLeaseStoreConnect::bucket`] says otherwise.
pub const DEFAULT_LEASE_BUCKET: &str = "catga_leases";

/// How long the lease bucket keeps an entry after its last write, for a bucket this store
/// creates, unless [`NatsLeaseStoreConnect::max_age`] says otherwise: an hour.
pub const DEFAULT_LEASE_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// The shortest `max_age` other than zero: JetStream removes aged entries about once a
/// second, and a TTL must be shorter than it.
const MIN_MAX_AGE: Duration = Duration::from_secs(1);

/// JetStream's default duplicate window, the bucket's unless `max_age` is shorter.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Configures a [`NatsLeaseStore`]; `.await` it to open the lease bucket. Obtain one with
/// [`NatsLeaseStore::connect`], [`NatsLeaseStore::with_client`] or
/// [`NatsLeaseStore::with_jetstream`].
///
/// Setting an option only records it. Awaiting checks every option before anything is sent
/// (a refused one is [`ConnectError::InvalidOption`] inside [`NatsLeaseError::Connect`]),
/// connects when given a URL, then opens the bucket, or creates it when it does not exist:
/// a key-value bucket keeping one value per key (history 1), on disk, with the configured
/// [`max_age`](Self::max_age). A bucket that exists is used as it is, with its own
/// `max_age` (a warning says so when it differs from one set here).
///
/// # Errors
/// Awaiting it fails with [`NatsLeaseError::Connect`] for an option it cannot use, a URL
/// that is not a NATS server's or a server it cannot reach or that refuses the credentials,
/// and [`NatsLeaseError::Bucket`] when the bucket can be neither opened nor created
/// (JetStream disabled, no permission).
#[must_use = "a `NatsLeaseStoreConnect` does nothing until it is awaited"]
pub struct NatsLeaseStoreConnect {
    source: Source,
    bucket: String,
    max_age: Option<Duration>,
    response_timeout: Duration,
}

/// Where the store's connection comes from.
enum Source {
    Url(String),
    Client(async_nats::Client),
    JetStream(jetstream::Context),
}

impl fmt::Debug for NatsLeaseStoreConnect {
    /// Written by hand so that a credential in the URL never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Url(url) => redact_url(url).into_owned(),
            Source::Client(_) => "a client".to_string(),
            Source::JetStream(_) => "a jetstream context".to_string(),
        };
        f.debug_struct("NatsLeaseStoreConnect")
            .field("source", &source)
            .field("bucket", &self.bucket)
            .field("max_age", &self.max_age)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl NatsLeaseStore {
    /// A lease store on the NATS server at `url` (`nats://host:4222`, `tls://host:4222`),
    /// on a connection of its own. Credentials may be given in the URL, percent-encoded
    /// (`nats://user:password@host`, `nats://token@host`); for other kinds, connect a client
    /// yourself and use [`with_client`](Self::with_client). Set options on the returned
    /// [`NatsLeaseStoreConnect`], then `.await` it.
    pub fn connect(url: impl Into<String>) -> NatsLeaseStoreConnect {
        NatsLeaseStoreConnect::new(Source::Url(url.into()))
    }

    /// A lease store on `client`'s connection, such as a transport's
    /// ([`NatsTransport::client`](crate::NatsTransport::client)): no new connection.
    pub fn with_client(client: async_nats::Client) -> NatsLeaseStoreConnect {
        NatsLeaseStoreConnect::new(Source::Client(client))
    }

    /// A lease store through `context`, with its API prefix or domain and its timeout
    /// ([`response_timeout`](NatsLeaseStoreConnect::response_timeout) is not applied).
    pub fn with_jetstream(context: jetstream::Context) -> NatsLeaseStoreConnect {
        NatsLeaseStoreConnect::new(Source::JetStream(context))
    }
}

impl NatsLeaseStoreConnect {
    fn new(source: Source) -> NatsLeaseStoreConnect {
        NatsLeaseStoreConnect {
            source,
            bucket: DEFAULT_LEASE_BUCKET.to_string(),
            max_age: None,
            response_timeout: Duration::from_secs(5),
        }
    }

    /// The key-value bucket holding the leases (default [`DEFAULT_LEASE_BUCKET`]): ASCII
    /// letters, digits, `_` and `-`. Applications that must not share leases use different
    /// buckets; the instances of one application must use the same.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// How long the bucket keeps an entry after its last write, when this store creates the
    /// bucket (default [`DEFAULT_LEASE_MAX_AGE`], an hour; zero keeps entries for good,
    /// otherwise at least a second). A running lease is written at every renewal, so this
    /// only bounds how long the entry of a lease nobody holds any more (released, or run out
    /// with its holder gone) lingers. Every TTL must be shorter than the bucket's `max_age`
    /// (a longer one is refused with [`NatsLeaseError::TtlTooLong`]). A lease whose entry
    /// was removed keeps its tokens growing (see [`NatsLeaseStore`], "Fencing tokens").
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How long connecting and each JetStream call may take (default 5 s, at least 1 ms).
    /// Not applied to a context given to [`NatsLeaseStore::with_jetstream`], which keeps its
    /// own.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Every option, before any I/O.
    fn check(&self) -> Result<(), ConnectError> {
        let bucket_ok = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !bucket_ok {
            return Err(InvalidOption::new(
                "bucket",
                format!("{:?}", self.bucket),
                "a key-value bucket name is ASCII letters, digits, `_` and `-`, not empty",
            )
            .into());
        }
        if let Some(age) = self.max_age
            && !age.is_zero()
            && age < MIN_MAX_AGE
        {
            return Err(InvalidOption::new(
                "max_age",
                format!("{age:?}"),
                "write at least 1s, or zero to keep entries for good",
            )
            .into());
        }
        if self.response_timeout < Duration::from_millis(1) {
            return Err(InvalidOption::new(
                "response_timeout",
                format!("{:?}", self.response_timeout),
                "write at least 1ms",
            )
            .into());
        }
        Ok(())
    }

    async fn run(self) -> Result<NatsLeaseStore, NatsLeaseError> {
        self.check().map_err(NatsLeaseError::Connect)?;
        let context = match self.source {
            Source::JetStream(context) => context,
            Source::Client(client) => jetstream::ContextBuilder::new()
                .timeout(self.response_timeout)
                .build(client),
            Source::Url(url) => {
                let shown = redact_url(&url).into_owned();
                let options =
                    async_nats::ConnectOptions::new().connection_timeout(self.response_timeout);
                let (address, options) = Auth::default()
                    .apply(&url, options)
                    .await
                    .map_err(NatsLeaseError::Connect)?;
                let client = options.connect(address).await.map_err(|source| {
                    NatsLeaseError::Connect(ConnectError::connect(shown, source))
                })?;
                jetstream::ContextBuilder::new()
                    .timeout(self.response_timeout)
                    .build(client)
            }
        };
        let wanted = self.max_age.unwrap_or(DEFAULT_LEASE_MAX_AGE);
        let kv = open_bucket(&context, &self.bucket, wanted).await?;
        let max_age = kv.stream.cached_info().config.max_age;
        if self.max_age.is_some_and(|asked| asked != max_age) {
            tracing::warn!(target: "catga::nats", bucket = %self.bucket, ?max_age,
                asked = ?wanted, "the lease bucket exists with another max age; using it as it is");
        }
        tracing::debug!(target: "catga::nats", bucket = %self.bucket, ?max_age,
            "NATS lease store ready");
        Ok(NatsLeaseStore {
            kv,
            bucket: self.bucket,
            max_age,
        })
    }
}

impl IntoFuture for NatsLeaseStoreConnect {
    type Output = Result<NatsLeaseStore, NatsLeaseError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    /// Checks every option, connects if given a URL, and opens or creates the bucket.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The bucket `bucket`, created with `max_age` if it does not exist.
async fn open_bucket(
    context: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
) -> Result<kv::Store, NatsLeaseError> {
    let failed = |source: async_nats::Error| NatsLeaseError::Bucket {
        bucket: bucket.to_string(),
        source,
    };
    match context.get_key_value(bucket).await {
        Ok(kv) => return Ok(kv),
        Err(error) if !is_not_found(&error) => return Err(failed(error.into())),
        Err(_) => {}
    }
    // The bucket's stream, as the client's `create_key_value` would make it: that call first
    // asks for the account's information, which async-nats 0.51 cannot read from
    // nats-server 2.9.
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(
            "catga leases: one entry per lease, see catga_nats::NatsLeaseStore".to_string(),
        ),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        // Key-value writes carry no message ids; the window only has to fit in `max_age`.
        duplicate_window: if max_age.is_zero() {
            DUPLICATE_WINDOW
        } else {
            max_age.min(DUPLICATE_WINDOW)
        },
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        ..jetstream::stream::Config::default()
    };
    if let Err(created) = context.create_stream(config).await {
        // Another instance may have created it meanwhile (with another configuration).
        return context
            .get_key_value(bucket)
            .await
            .map_err(|_| failed(created.into()));
    }
    context
        .get_key_value(bucket)
        .await
        .map_err(|error| failed(error.into()))
}

/// Whether opening a bucket failed because its stream does not exist.
fn is_not_found(error: &jetstream::context::KeyValueError) -> bool {
    use jetstream::context::{GetStreamError, GetStreamErrorKind, KeyValueErrorKind};
    error.kind() == KeyValueErrorKind::GetBucket
        && std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<GetStreamError>())
            .is_some_and(|source| {
                matches!(source.kind(), GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
            })
}
