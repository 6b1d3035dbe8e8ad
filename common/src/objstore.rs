//! Object storage (S3 and S3-compatible stores: AWS, Garage, MinIO, Ceph RGW) behind a small
//! synchronous API.
//!
//! The protocol (SigV4 signing, retries with backoff, pagination, multipart uploads) is the
//! `object_store` crate's, chosen by measurement (docs/s3-client.md). It is asynchronous, so a
//! [`Store`] owns a single-threaded tokio runtime and blocks on it: the binaries stay synchronous
//! and never see the crate or the runtime.
//!
//! What the rest of pitr relies on:
//! - [`S3Url`] is the typed `s3://BUCKET/PREFIX`; every key a [`Store`] takes is relative to the
//!   prefix.
//! - [`Settings`] come from the standard `AWS_*` variables ([`Settings::from_env_vars`]) plus
//!   explicit overrides (endpoint, region, path-style addressing, a key file) that
//!   `--config-file` provides. A secret is a [`Secret`], which no `Debug`, `Display` or error
//!   text ever shows.
//! - "Not there" is a value (`Ok(None)`, [`PutOutcome::AlreadyExists`]), never an error; a store
//!   that cannot be reached is [`Error::Unreachable`], never "not found", so pitr-restore cannot
//!   read an unreachable store as the end of the archive.
//! - Network errors, 5xx and 503 SlowDown are retried with exponential backoff for at most
//!   [`Settings::retry_budget`]; every call returns within that budget plus one request timeout.
//! - [`Store::put_new`] creates an object only if none exists under its key, with
//!   `If-None-Match: *` (or HEAD then PUT where the store ignores that header, see
//!   [`Settings::if_none_match`] and [`Store::probe_conditional_create`]).
//! - [`Upload`] streams an object of any size as a multipart upload with bounded memory
//!   (part size × (concurrency + 1)); only [`Upload::commit`] makes it appear under its key, and
//!   dropping it uncommitted aborts the upload.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

/// The default for [`Settings::retry_budget`].
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// The longest pause of [`Store::put_new`] between its PUT and its check, without conditional
/// writes.
const MAX_CREATE_PAUSE: Duration = Duration::from_secs(5);

/// Added to twice the look-to-written time for that pause.
const CREATE_PAUSE_MARGIN: Duration = Duration::from_millis(50);

/// How long a connection may sit idle and still be reused. A store may close a connection it
/// finds idle, and a request sent on one it closed just as we reused it fails where it cannot
/// be retried (a conditional create). The archive-ahead worker's batches, which share a client
/// ([`crate::objarchive::Stores`]), follow one another well within this while there is a
/// backlog; after a longer wait a new connection costs one TLS handshake.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default for [`Settings::part_size`]: S3 wants at least 5 MiB for every part but the last.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// S3's limit on the size of one part.
const MAX_PART_SIZE: u64 = 5 << 30;

/// The part size of an upload of an object expected to be `expected` bytes: `configured`, or
/// more when `configured` parts would pass S3's 10,000 parts for a quarter more than
/// `expected` (a database grows while it is backed up), in whole MiB, at most 5 GiB. An
/// object is streamed before its size is known, and with fixed 8 MiB parts every backup of a
/// database past 78 GiB failed at part 10,001 (AWS, MinIO and Ceph enforce the limit).
pub fn part_size_for(configured: usize, expected: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let room = expected.saturating_add(expected / 4);
    let needed = room.div_ceil(MAX_PARTS).div_ceil(MIB).saturating_mul(MIB);
    let size = needed.clamp(configured as u64, MAX_PART_SIZE.max(configured as u64));
    usize::try_from(size).unwrap_or(configured)
}

/// The scheme of an S3 location.
const SCHEME: &str = "s3://";

// ---------------------------------------------------------------------------------------------
// s3://BUCKET/PREFIX

/// A parsed `s3://BUCKET/PREFIX`: a bucket and a key prefix (no leading or trailing `/`, possibly
/// empty) under which pitr keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    bucket: String,
    prefix: String,
}

/// Text that is not an `s3://BUCKET/PREFIX` location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It does not start with `s3://`.
    #[error("\"{0}\" is not an S3 location (s3://BUCKET/PREFIX)")]
    NotS3(String),
    /// Nothing between `s3://` and the first `/`.
    #[error("\"{0}\" names no bucket (s3://BUCKET/PREFIX)")]
    NoBucket(String),
    /// A bucket name S3 would refuse.
    #[error(
        "\"{text}\": bucket name \"{bucket}\" is not 3 to 63 lowercase letters, digits, '.' and '-'"
    )]
    BadBucket {
        /// The location as given.
        text: String,
        /// The bucket part.
        bucket: String,
    },
    /// A prefix with an empty, `.` or `..` segment (`a//b`, `a/./b`).
    #[error("\"{text}\": prefix \"{prefix}\" has an empty, \".\" or \"..\" segment")]
    BadPrefix {
        /// The location as given.
        text: String,
        /// The prefix part.
        prefix: String,
    },
}

impl S3Url {
    /// Parses `s3://BUCKET`, `s3://BUCKET/` or `s3://BUCKET/PREFIX[/]`.
    pub fn parse(text: &str) -> Result<S3Url, UrlError> {
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| UrlError::NotS3(text.to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UrlError::NoBucket(text.to_owned()));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok {
            return Err(UrlError::BadBucket {
                text: text.to_owned(),
                bucket: bucket.to_owned(),
            });
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && !is_clean_key(prefix) {
            return Err(UrlError::BadPrefix {
                text: text.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without leading or trailing `/`; empty for the bucket's root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full object key of `key` (relative to the prefix).
    pub fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

impl FromStr for S3Url {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<S3Url, UrlError> {
        S3Url::parse(text)
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A key made of non-empty segments other than `.` and `..`, without leading or trailing `/`.
fn is_clean_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

// ---------------------------------------------------------------------------------------------
// Settings and secrets

/// A secret (secret access key, session token). Its `Debug` shows `Secret(redacted)`, it has no
/// `Display`, and only this module reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// An access key: id (not secret, shown in messages), secret and optional session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
}

/// How to reach a store: endpoint, region, addressing, credentials and the time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http(s)://host[:port]` of an S3-compatible store; `None` for AWS S3 itself.
    pub endpoint: Option<String>,
    /// The region requests are signed for; `None` means `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`); `None` means path style with an endpoint and virtual-hosted on
    /// AWS.
    pub path_style: Option<bool>,
    /// The access key; `None` is an error at [`Store::open`].
    pub credentials: Option<Credentials>,
    /// Whether the store honours `If-None-Match: *` on PutObject (AWS S3 since 2024, MinIO,
    /// Ceph RGW). When false, [`Store::put_new`] does HEAD, PUT, pause, HEAD, which tells the
    /// loser of a race unless the winner was much slower (see there for exactly when). Default false: it is safe on
    /// every store, where true on a store that ignores the header would replace silently.
    pub if_none_match: bool,
    /// How long a call keeps retrying network errors, 5xx and throttling.
    pub retry_budget: Duration,
    /// Limit for establishing one connection.
    pub connect_timeout: Duration,
    /// Limit for one request, body included.
    pub request_timeout: Duration,
    /// Size of each part of a multipart [`Upload`].
    pub part_size: usize,
    /// Parts of one [`Upload`] in flight at once.
    pub upload_concurrency: usize,
    /// Certificate authorities trusted for an https endpoint instead of the system's
    /// (`--s3-ca-file`: an in-house store with its own CA).
    pub ca_file: Option<CaFile>,
}

/// A PEM file of certificate authorities, read and checked when the settings are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// Its content.
    pub pem: Vec<u8>,
}

impl CaFile {
    /// Reads `path` and checks that it holds at least one PEM certificate.
    pub fn read(path: &Path) -> Result<CaFile, SettingsError> {
        let bad = |reason: String| SettingsError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certificates =
            object_store::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certificates.is_empty() {
            return Err(bad("no PEM certificate in it".to_owned()));
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            pem,
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            endpoint: None,
            region: None,
            path_style: None,
            credentials: None,
            if_none_match: false,
            retry_budget: DEFAULT_RETRY_BUDGET,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: 2,
            ca_file: None,
        }
    }
}

/// The HINT of a [`SettingsError`], which every binary reports as a usage error.
pub const SETTINGS_HINT: &str = "give --s3-addressing path or virtual, a readable --s3-key-file with aws_access_key_id and aws_secret_access_key, and a --s3-ca-file of PEM certificates";

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The key file cannot be read.
    #[error("cannot read S3 key file {}", path.display())]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line of the key file is not `name = value`, `[section]` or a comment (the line itself
    /// is not shown: it may hold a secret).
    #[error("cannot parse line {line} of S3 key file {}", path.display())]
    KeyFileSyntax {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// The CA file cannot be read or holds no PEM certificate.
    #[error("cannot use S3 CA file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `--s3-addressing` is neither `path` nor `virtual`.
    #[error("--s3-addressing {0} is neither path nor virtual")]
    Addressing(String),
    /// The key file lacks a setting.
    #[error("S3 key file {} has no {name}", path.display())]
    KeyFileIncomplete {
        /// The file.
        path: PathBuf,
        /// The missing setting.
        name: &'static str,
    },
}

/// The object-store options every binary takes (declared by [`crate::tool_args!`], usable in a
/// `--config-file`): everything but the secret, which comes from the environment or the key
/// file, never from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// `--s3-endpoint`: `http(s)://host[:port]` of an S3-compatible store (overrides
    /// `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `--s3-region` (overrides `AWS_REGION`).
    pub region: Option<String>,
    /// `--s3-addressing path|virtual`.
    pub addressing: Option<String>,
    /// `--s3-key-file`: an AWS shared-credentials file holding the access key.
    pub key_file: Option<PathBuf>,
    /// `--s3-conditional-writes`: the store honours `If-None-Match: *` (AWS S3, MinIO, Ceph
    /// RGW; not Garage 2.5).
    pub conditional_writes: bool,
    /// `--s3-retry-seconds`: how long one call retries an unreachable or failing store
    /// ([`Settings::retry_budget`]).
    pub retry_seconds: Option<u64>,
    /// `--s3-ca-file`: PEM certificate authorities for an https endpoint, instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
}

impl S3Options {
    /// The settings: the `AWS_*` variables looked up with `var` (see
    /// [`Settings::from_env_vars`]), then these options over them.
    pub fn settings(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = Settings::from_env_vars(var);
        if let Some(endpoint) = &self.endpoint {
            settings.endpoint = Some(endpoint.clone());
        }
        if let Some(region) = &self.region {
            settings.region = Some(region.clone());
        }
        settings.path_style = match self.addressing.as_deref() {
            None => None,
            Some("path") => Some(true),
            Some("virtual") => Some(false),
            Some(other) => return Err(SettingsError::Addressing(other.to_owned())),
        };
        settings.if_none_match = self.conditional_writes;
        if let Some(seconds) = self.retry_seconds {
            settings.retry_budget = Duration::from_secs(seconds);
        }
        if let Some(path) = &self.ca_file {
            settings.ca_file = Some(CaFile::read(path)?);
        }
        match &self.key_file {
            Some(path) => settings.with_key_file(path),
            None => Ok(settings),
        }
    }

    /// The options as command-line arguments, to hand on to another pitr program.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut opt = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(name.to_owned());
                args.push(v);
            }
        };
        opt("--s3-endpoint", self.endpoint.clone());
        opt("--s3-region", self.region.clone());
        opt("--s3-addressing", self.addressing.clone());
        opt(
            "--s3-key-file",
            self.key_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        opt(
            "--s3-ca-file",
            self.ca_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        if let Some(seconds) = self.retry_seconds {
            args.push("--s3-retry-seconds".to_owned());
            args.push(seconds.to_string());
        }
        if self.conditional_writes {
            args.push("--s3-conditional-writes".to_owned());
        }
        args
    }
}

impl Settings {
    /// Settings from the standard variables, looked up with `var`: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (else `AWS_DEFAULT_REGION`) and
    /// `AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`). Empty values count as unset. The binaries
    /// pass `|name| std::env::var(name).ok()`.
    pub fn from_env_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: Secret(secret),
                session_token: get("AWS_SESSION_TOKEN").map(Secret),
            }),
            _ => None,
        };
        Settings {
            endpoint: get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL")),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            credentials,
            ..Settings::default()
        }
    }

    /// Reads the access key from `path`, in the format of AWS's shared credentials file:
    /// `aws_access_key_id = ...`, `aws_secret_access_key = ...` and optionally
    /// `aws_session_token = ...`, outside any section or in `[default]` (other sections are
    /// ignored; `#` and `;` start comments). It replaces credentials from the environment.
    pub fn with_key_file(mut self, path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::KeyFileRead {
            path: path.to_path_buf(),
            source,
        })?;
        self.credentials = Some(parse_key_file(&text).map_err(|e| match e {
            KeyFileError::Syntax(line) => SettingsError::KeyFileSyntax {
                path: path.to_path_buf(),
                line,
            },
            KeyFileError::Missing(name) => SettingsError::KeyFileIncomplete {
                path: path.to_path_buf(),
                name,
            },
        })?);
        Ok(self)
    }

    /// The endpoint as messages name it: the configured one, else AWS's for the region.
    pub fn endpoint_display(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{}.amazonaws.com", self.region_or_default()),
        }
    }

    fn region_or_default(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }
}

/// Why a key file's text is unusable (without its path).
#[derive(Debug, PartialEq, Eq)]
enum KeyFileError {
    Syntax(usize),
    Missing(&'static str),
}

/// Parses the text of a key file (see [`Settings::with_key_file`]).
fn parse_key_file(text: &str) -> Result<Credentials, KeyFileError> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut in_default = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        let (name, value) = line.split_once('=').ok_or(KeyFileError::Syntax(n + 1))?;
        if !in_default {
            continue;
        }
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(Secret(value)),
            "aws_session_token" => token = Some(Secret(value)),
            _ => {}
        }
    }
    Ok(Credentials {
        access_key_id: id.ok_or(KeyFileError::Missing("aws_access_key_id"))?,
        secret_access_key: secret.ok_or(KeyFileError::Missing("aws_secret_access_key"))?,
        session_token: token,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to a store. Every variant names the endpoint and the bucket;
/// [`Error::hint`] gives the remedy for the HINT line. No variant is "not found": that is
/// `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer, a network error, a timeout or a server error (5xx, 503 SlowDown) that lasted
    /// through every retry.
    #[error("object store {endpoint} unreachable: {op} s3://{bucket}/{key} failed after {:.1} s of retries", elapsed.as_secs_f64())]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The full object key (or prefix).
        key: String,
        /// The operation ("PUT", "GET", ...).
        op: &'static str,
        /// How long the call tried.
        elapsed: Duration,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// The store refused the credentials or the access (401, 403).
    #[error("object store {endpoint} denied {op} s3://{bucket}/{key}")]
    Denied {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The full object key (or prefix).
        key: String,
        /// The operation.
        op: &'static str,
        /// The answer.
        #[source]
        source: BoxError,
    },
    /// Any other refusal or protocol error (a missing bucket, a bad request).
    #[error("object store {endpoint}: {op} s3://{bucket}/{key} failed")]
    Failed {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The full object key (or prefix).
        key: String,
        /// The operation.
        op: &'static str,
        /// The answer.
        #[source]
        source: BoxError,
    },
    /// A key that S3 paths cannot hold (empty segment, `.`, `..`).
    #[error("invalid object key {key:?} for s3://{bucket}")]
    BadKey {
        /// The bucket.
        bucket: String,
        /// The key as given.
        key: String,
    },
    /// No access key in the environment or the key file.
    #[error("no S3 access key for s3://{bucket} at {endpoint}")]
    NoCredentials {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    /// The client could not be built (a malformed endpoint, for instance).
    #[error("cannot set up an S3 client for s3://{bucket} at {endpoint}")]
    Setup {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// True when the store could not be reached (as opposed to refusing the request): the
    /// caller may retry later, and must never take it for "not found".
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// The error as a failure of what the caller was `doing` ("sending X to s3://..."): that
    /// line, then the store's own text, with the store's HINT (endpoint and bucket named).
    pub fn failure(self, doing: impl Into<String>) -> anyhow::Error {
        let hint = self.hint();
        anyhow::Error::from(self).context(crate::exit::Failure::new(doing).hint(hint))
    }

    /// The remedy, for the HINT line.
    pub fn hint(&self) -> String {
        match self {
            Error::Unreachable {
                endpoint, bucket, ..
            } => format!(
                "check that the object store at {endpoint} is up and reachable from this host \
                 and serves bucket {bucket}; the call is retried the next time"
            ),
            Error::Denied {
                endpoint, bucket, ..
            } => format!(
                "check the access key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the key \
                 file), the region, and the key's rights on bucket {bucket} at {endpoint}"
            ),
            Error::Failed {
                endpoint, bucket, ..
            }
            | Error::Setup {
                endpoint, bucket, ..
            } => format!(
                "check the endpoint ({endpoint}), the region and that bucket {bucket} exists"
            ),
            Error::BadKey { .. } => {
                "object keys are names separated by '/', without empty, '.' or '..' parts"
                    .to_owned()
            }
            Error::NoCredentials { .. } => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                                            name a key file in the configuration file"
                .to_owned(),
        }
    }
}

/// How one failed call is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    NotFound,
    Exists,
    Unreachable,
    Denied,
    Failed,
}

/// Sorts an `object_store` error into what pitr needs to tell apart.
fn classify(err: &object_store::Error) -> Class {
    use object_store::Error as E;
    match err {
        E::NotFound { .. } => Class::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => Class::Exists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Class::Denied,
        other => {
            let mut current: Option<&(dyn std::error::Error + 'static)> = Some(other);
            while let Some(e) = current {
                if e.downcast_ref::<object_store::client::HttpError>()
                    .is_some()
                {
                    return Class::Unreachable;
                }
                current = e.source();
            }
            // A server error that outlasted the retries (the retry error is not public, so its
            // status is read from its text: "... status code: 503 Service Unavailable ...").
            if server_error_status(&other.to_string()) {
                Class::Unreachable
            } else {
                Class::Failed
            }
        }
    }
}

/// Whether an `object_store` error text reports a 5xx status.
fn server_error_status(text: &str) -> bool {
    text.split("status code: ").skip(1).any(|rest| {
        rest.starts_with('5')
            && rest
                .as_bytes()
                .get(1..3)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    })
}

// ---------------------------------------------------------------------------------------------
// The store

/// What [`Store::put_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and now holds the bytes given.
    Created,
    /// An object already exists under the key; it was not touched (compare its content).
    AlreadyExists,
}

/// An object [`Store::put_after_look`] wrote.
#[derive(Debug)]
pub struct Written {
    proof: Proof,
    checked: bool,
    check_at: Instant,
}

/// What tells a written object from another under its key: the entity tag the PUT answered
/// with, or, from a store that gave none, the bytes themselves (kept only then, so that a batch
/// waiting out its pause does not hold a second copy of every body it sent).
#[derive(Debug)]
enum Proof {
    Etag(String),
    Bytes(PutPayload),
}

impl Written {
    /// The earliest time at which the look that tells whether the object is still ours may be
    /// made: the end of the create's pause (the PUT's answer itself for a conditional create).
    pub fn check_at(&self) -> Instant {
        self.check_at
    }

    /// Waits until [`Written::check_at`].
    pub fn wait(&self) {
        let left = self.check_at.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
    }

    /// Whether `listed` (a LIST made after the write) shows this object still under `key`: the
    /// same entity tag, or, when the store gave none, the same bytes read back. A conditional
    /// create is ours once written.
    pub fn is_ours(&self, store: &Store, key: &str, listed: &[ObjectInfo]) -> Result<bool, Error> {
        if self.checked {
            return Ok(true);
        }
        let Some(object) = listed.iter().find(|o| o.key == key) else {
            return Ok(false);
        };
        match (&self.proof, &object.etag) {
            (Proof::Etag(ours), Some(theirs)) => Ok(same_etag(ours, theirs)),
            // A listing without entity tags: ask for the object's own.
            (proof, _) => store.is_ours(key, proof),
        }
    }
}

/// Whether two entity tags name the same object version (stores differ on the quotes).
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// One object, as listed or looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: SystemTime,
    /// The entity tag, if the store gave one (the MD5 of the content for a single PUT).
    pub etag: Option<String>,
}

/// A bucket and prefix on one store, ready for requests. Blocking: each call runs the request
/// on the store's own single-threaded runtime. Clones share the runtime and the client.
#[derive(Clone)]
pub struct Store {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    s3: AmazonS3,
    url: S3Url,
    endpoint: String,
    settings: Settings,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url.to_string())
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Sets up a client for `url` with `settings`. No request is made.
    pub fn open(url: &S3Url, settings: &Settings) -> Result<Store, Error> {
        let endpoint = settings.endpoint_display();
        let setup_error = |source: BoxError| Error::Setup {
            endpoint: endpoint.clone(),
            bucket: url.bucket.clone(),
            source,
        };
        let credentials = settings
            .credentials
            .as_ref()
            .ok_or_else(|| Error::NoCredentials {
                endpoint: endpoint.clone(),
                bucket: url.bucket.clone(),
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup_error(Box::new(e)))?;

        let path_style = settings.path_style.unwrap_or(settings.endpoint.is_some());
        let plain_http = settings
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        // Loading the system's CA certificates costs about 12 ms of CPU per process (measured,
        // docs/s3-client.md): skip it when the endpoint does not use TLS, or when a CA file
        // says whom to trust.
        let mut client = ClientOptions::new()
            .with_allow_http(plain_http)
            .with_no_system_certificates(plain_http || settings.ca_file.is_some())
            .with_connect_timeout(settings.connect_timeout)
            .with_timeout(settings.request_timeout)
            .with_pool_idle_timeout(POOL_IDLE_TIMEOUT);
        if let Some(ca) = &settings.ca_file {
            let certificates = object_store::Certificate::from_pem_bundle(&ca.pem)
                .map_err(|e| setup_error(Box::new(e)))?;
            for certificate in certificates {
                client = client.with_root_certificate(certificate);
            }
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.,
            },
            // The budget, not a count, bounds the retries.
            max_retries: usize::MAX,
            retry_timeout: settings.retry_budget,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(settings.region_or_default())
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key.expose())
            .with_virtual_hosted_style_request(!path_style)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token.expose());
        }
        if let Some(base) = &settings.endpoint {
            let base = base.trim_end_matches('/');
            builder = builder.with_endpoint(if path_style {
                base.to_owned()
            } else {
                // Virtual-hosted addressing: the bucket goes into the host name.
                match base.split_once("://") {
                    Some((scheme, host)) => format!("{scheme}://{}.{host}", url.bucket),
                    None => base.to_owned(),
                }
            });
        }
        let s3 = builder.build().map_err(|e| setup_error(Box::new(e)))?;
        Ok(Store {
            runtime: std::sync::Arc::new(runtime),
            s3,
            url: url.clone(),
            endpoint,
            settings: settings.clone(),
        })
    }

    /// The location this store serves.
    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// The endpoint, as messages name it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stores `body` under `key` unless an object exists there, and reports `Created` only if,
    /// after the write, the object under `key` is ours (its entity tag is the one our PUT got).
    ///
    /// With [`Settings::if_none_match`] the store decides atomically (`If-None-Match: *`): of two
    /// racing writers exactly one gets `Created`. Without it (Garage 2.5 ignores the header)
    /// this is HEAD, PUT, a pause, then HEAD again; with `d` this writer's time from its first
    /// HEAD to its PUT's answer, the pause is `2d + 50 ms` (at most 5 s). The guarantees are then:
    /// - a writer whose first HEAD sees an object never writes (`AlreadyExists`);
    /// - a writer whose object was replaced before its second HEAD gets `AlreadyExists` (the
    ///   caller then compares content), so of two racing writers with different bytes exactly
    ///   one gets `Created` and its bytes stay, provided the winner's own `d` is no longer than
    ///   the loser's pause;
    /// - left open: a winner slower than that can land its object after the loser's second HEAD,
    ///   and both get `Created` (the winner's bytes stay). No S3 call closes this window without
    ///   conditional writes.
    ///
    /// `AlreadyExists` also comes back when an earlier attempt of this very call succeeded and
    /// the answer was lost: compare the content.
    pub fn put_new(&self, key: &str, body: Vec<u8>) -> Result<PutOutcome, Error> {
        let looked = Instant::now();
        if !self.settings.if_none_match && self.head(key)?.is_some() {
            return Ok(PutOutcome::AlreadyExists);
        }
        match self.put_after_look(key, bytes::Bytes::from(body), looked, None)? {
            Some(written) => {
                written.wait();
                if self.is_ours(key, &written.proof)? {
                    Ok(PutOutcome::Created)
                } else {
                    Ok(PutOutcome::AlreadyExists)
                }
            }
            None => Ok(PutOutcome::AlreadyExists),
        }
    }

    /// The write of [`Store::put_new`] for a caller that has itself just looked for `key` and
    /// found nothing (a LIST begun at `looked`, which stands for put_new's first HEAD). With
    /// conditional writes the store decides (`None`: another object is there). Without, the
    /// object is written, and the caller must look again no sooner than
    /// [`Written::check_at`], `2d + 50 ms` after the PUT's answer (`d`: from `looked` to that
    /// answer; later is as good), and check that the object under `key` is still
    /// [`Written::is_ours`] before it counts it created. This does not wait itself, so that a
    /// batch of creates that share one look can share one look again after the last pause
    /// ([`Written::wait`] waits). `None` never comes back without conditional writes.
    /// `crc32c`, the CRC-32C of the content the object stands for (a WAL file before
    /// compression), is stored with the object as its [`CRC_METADATA`] metadata.
    pub fn put_after_look(
        &self,
        key: &str,
        body: bytes::Bytes,
        looked: Instant,
        crc32c: Option<u32>,
    ) -> Result<Option<Written>, Error> {
        let path = self.path(key)?;
        let conditional = self.settings.if_none_match;
        let mode = if conditional {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let mut opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        if let Some(crc) = crc32c {
            opts.attributes.insert(
                Attribute::Metadata(CRC_METADATA.into()),
                AttributeValue::from(format!("{crc:08x}")),
            );
        }
        let payload = PutPayload::from(body);
        let proof = match self.block(self.s3.put_opts(&path, payload.clone(), opts)) {
            Ok(result) => match result.e_tag {
                Some(tag) => Proof::Etag(tag),
                None => Proof::Bytes(payload),
            },
            Err((Class::Exists, _)) => return Ok(None),
            Err((class, e)) => return Err(self.error(class, "PUT", key, e)),
        };
        let answered = Instant::now();
        let mut check_at = answered;
        if !conditional {
            let wrote = answered.saturating_duration_since(looked);
            let pause = (wrote * 2 + CREATE_PAUSE_MARGIN).min(MAX_CREATE_PAUSE);
            crate::log_verbose!(
                "{key}: looked and wrote in {} ms, checking again after {} ms",
                wrote.as_millis(),
                pause.as_millis()
            );
            check_at = answered + pause;
        }
        Ok(Some(Written {
            proof,
            checked: conditional,
            check_at,
        }))
    }

    /// Whether the object now under `key` is the one we wrote: same entity tag as our PUT's
    /// answer, or (without one) the same bytes.
    fn is_ours(&self, key: &str, proof: &Proof) -> Result<bool, Error> {
        match proof {
            Proof::Etag(tag) => Ok(self
                .head(key)?
                .and_then(|info| info.etag)
                .is_some_and(|theirs| same_etag(tag, &theirs))),
            Proof::Bytes(payload) => {
                let body: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                Ok(self.get(key)?.is_some_and(|got| got == body))
            }
        }
    }

    /// Stores `body` under `key`, replacing any object there (for objects that pitr rewrites,
    /// never for WAL or backup files).
    pub fn put_replace(&self, key: &str, body: Vec<u8>) -> Result<(), Error> {
        let path = self.path(key)?;
        self.block(self.s3.put(&path, PutPayload::from(body)))
            .map(drop)
            .map_err(|(class, e)| self.error(class, "PUT", key, e))
    }

    /// The content of `key`, or `None` when no such object exists.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get_with_crc(key)?.map(|(bytes, _)| bytes))
    }

    /// [`Store::get`], with the CRC-32C recorded with the object ([`CRC_METADATA`]), if any.
    pub fn get_with_crc(&self, key: &str) -> Result<Option<WithCrc>, Error> {
        let path = self.path(key)?;
        let fetched = self.block(async {
            let result = self.s3.get(&path).await?;
            let crc = recorded_crc(&result.attributes);
            Ok((result.bytes().await?, crc))
        });
        match fetched {
            Ok((bytes, crc)) => Ok(Some((Vec::from(bytes), crc))),
            Err((Class::NotFound, _)) => Ok(None),
            Err((class, e)) => Err(self.error(class, "GET", key, e)),
        }
    }

    /// A reader of `key`'s content as it arrives, or `None` when no such object exists.
    pub fn get_reader(&self, key: &str) -> Result<Option<ObjectReader<'_>>, Error> {
        let path = self.path(key)?;
        match self.block(self.s3.get(&path)) {
            Ok(result) => Ok(Some(ObjectReader {
                store: self,
                key: key.to_owned(),
                crc32c: recorded_crc(&result.attributes),
                size: result.meta.size,
                stream: result.into_stream(),
                chunk: bytes::Bytes::new(),
            })),
            Err((Class::NotFound, _)) => Ok(None),
            Err((class, e)) => Err(self.error(class, "GET", key, e)),
        }
    }

    /// Size, date and entity tag of `key`, or `None` when no such object exists.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let path = self.path(key)?;
        match self.block(self.s3.head(&path)) {
            Ok(meta) => Ok(Some(self.info(meta))),
            Err((Class::NotFound, _)) => Ok(None),
            Err((class, e)) => Err(self.error(class, "HEAD", key, e)),
        }
    }

    /// Every object under `dir/` (the whole prefix when `dir` is empty), sorted by key, all
    /// pages of the listing.
    pub fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, Error> {
        self.list_matching(dir, "")
    }

    /// The objects under `dir/` whose name (the part after `dir/`) starts with `name_prefix`,
    /// sorted by key: `list_matching("wal", "000000010000000000000003")` finds that segment in
    /// every stored form. The name prefix is the request's prefix: the store answers with the
    /// matches only.
    pub fn list_matching(&self, dir: &str, name_prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        let dir_key = self.url.full_key(dir);
        let dir_key = dir_key.trim_end_matches('/');
        let dir_path = if dir_key.is_empty() {
            None
        } else {
            Some(ObjectPath::parse(dir_key).map_err(|_| Error::BadKey {
                bucket: self.url.bucket.clone(),
                key: dir.to_owned(),
            })?)
        };
        let full_prefix = match dir_key {
            "" => name_prefix.to_owned(),
            d => format!("{d}/{name_prefix}"),
        };
        let listed = self.block(async {
            if name_prefix.is_empty() {
                let mut stream = self.s3.list(dir_path.as_ref());
                let mut found = Vec::new();
                while let Some(meta) = stream.next().await {
                    found.push(meta?);
                }
                return Ok(found);
            }
            // A name prefix is sent as the request's own prefix (not a directory), so the
            // answer holds only the matches: one small page, however large the archive.
            let mut found = Vec::new();
            let mut page_token = None;
            loop {
                let opts = PaginatedListOptions {
                    page_token,
                    ..PaginatedListOptions::default()
                };
                let page = self.s3.list_paginated(Some(&full_prefix), opts).await?;
                found.extend(page.result.objects);
                match page.page_token {
                    Some(token) => page_token = Some(token),
                    None => return Ok(found),
                }
            }
        });
        match listed {
            Ok(metas) => {
                let mut infos: Vec<ObjectInfo> = metas.into_iter().map(|m| self.info(m)).collect();
                infos.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(infos)
            }
            Err((Class::NotFound, _)) => Ok(Vec::new()),
            Err((class, e)) => Err(self.error(class, "LIST", dir, e)),
        }
    }

    /// Deletes `key`; deleting an object that does not exist is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key)?;
        match self.block(self.s3.delete(&path)) {
            Ok(()) | Err((Class::NotFound, _)) => Ok(()),
            Err((class, e)) => Err(self.error(class, "DELETE", key, e)),
        }
    }

    /// Deletes every key of `keys` in as few requests as the store allows (`DeleteObjects`, up
    /// to 1000 keys each); keys that do not exist are not an error. On failure the error names
    /// the first key of the batch, and some keys may be gone: deleting again is harmless.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let paths = keys
            .iter()
            .map(|k| self.path(k))
            .collect::<Result<Vec<_>, _>>()?;
        let deleted = self.block(async {
            let mut answers = self
                .s3
                .delete_stream(futures_util::stream::iter(paths.into_iter().map(Ok)).boxed());
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        deleted.map_err(|(class, e)| self.error(class, "DELETE", first, e))
    }

    /// Starts a multipart upload to `key`. Nothing appears under `key` until
    /// [`Upload::commit`]; dropping the upload aborts it. The upload holds a clone of the store,
    /// so it can live beside other work (a backup streams each file of a set into one).
    /// `expected` is what the caller knows of the object's size before it is written (0:
    /// nothing), which sets the part size ([`part_size_for`]).
    pub fn upload(&self, key: &str, expected: u64) -> Result<Upload, Error> {
        let path = self.path(key)?;
        let upload = self
            .block(self.s3.put_multipart(&path))
            .map_err(|(class, e)| self.error(class, "CREATE MULTIPART", key, e))?;
        Ok(Upload {
            store: self.clone(),
            key: key.to_owned(),
            writer: Some(WriteMultipart::new_with_chunk_size(
                upload,
                part_size_for(self.settings.part_size, expected),
            )),
            written: 0,
        })
    }

    /// Finds out whether the store honours `If-None-Match: *`: creates `key` twice with
    /// different content and sees whether the second is refused, then deletes it. `key` must be
    /// free (a name reserved for the probe).
    pub fn probe_conditional_create(&self, key: &str) -> Result<bool, Error> {
        let path = self.path(key)?;
        let create = |body: &'static [u8]| {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.block(self.s3.put_opts(&path, PutPayload::from_static(body), opts))
        };
        let first = create(b"pitr conditional create probe 1");
        let second = create(b"pitr conditional create probe 2");
        self.delete(key)?;
        if let Err((class, e)) = first {
            return Err(self.error(class, "PUT", key, e));
        }
        match second {
            Ok(_) => Ok(false),
            Err((Class::Exists, _)) => Ok(true),
            Err((class, e)) => Err(self.error(class, "PUT", key, e)),
        }
    }

    /// The object path of `key` under the prefix.
    fn path(&self, key: &str) -> Result<ObjectPath, Error> {
        if !is_clean_key(key) {
            return Err(Error::BadKey {
                bucket: self.url.bucket.clone(),
                key: key.to_owned(),
            });
        }
        ObjectPath::parse(self.url.full_key(key)).map_err(|_| Error::BadKey {
            bucket: self.url.bucket.clone(),
            key: key.to_owned(),
        })
    }

    /// Runs `fut` to completion on the runtime, within the retry budget plus one request
    /// timeout (the hard bound of every call), and classifies its error. Before it gives the
    /// runtime back it lets the runtime's ready tasks run once: a finished request's connection
    /// goes back to the pool from such a task, and left waiting until some thread drives the
    /// runtime again, the next request would open a new connection instead.
    fn block<T>(
        &self,
        fut: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, (Class, TimedError)> {
        let started = Instant::now();
        let deadline = self.settings.retry_budget + self.settings.request_timeout;
        match self.runtime.block_on(async {
            let done = tokio::time::timeout(deadline, fut).await;
            tokio::task::yield_now().await;
            done
        }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err((
                classify(&e),
                TimedError {
                    elapsed: started.elapsed(),
                    source: Box::new(e),
                },
            )),
            Err(elapsed) => Err((
                Class::Unreachable,
                TimedError {
                    elapsed: started.elapsed(),
                    source: Box::new(elapsed),
                },
            )),
        }
    }

    /// The error for a failed `op` on `key`.
    fn error(&self, class: Class, op: &'static str, key: &str, e: TimedError) -> Error {
        let endpoint = self.endpoint.clone();
        let bucket = self.url.bucket.clone();
        let key = self.url.full_key(key);
        match class {
            Class::Unreachable => Error::Unreachable {
                endpoint,
                bucket,
                key,
                op,
                elapsed: e.elapsed,
                source: e.source,
            },
            Class::Denied => Error::Denied {
                endpoint,
                bucket,
                key,
                op,
                source: e.source,
            },
            Class::NotFound | Class::Exists | Class::Failed => Error::Failed {
                endpoint,
                bucket,
                key,
                op,
                source: e.source,
            },
        }
    }

    fn info(&self, meta: object_store::ObjectMeta) -> ObjectInfo {
        let full = meta.location.as_ref();
        let key = match self.url.prefix.as_str() {
            "" => full,
            prefix => full
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full),
        };
        ObjectInfo {
            key: key.to_owned(),
            size: meta.size,
            last_modified: SystemTime::from(meta.last_modified),
            etag: meta.e_tag,
        }
    }
}

/// A failed call: its error and how long it took.
#[derive(Debug)]
struct TimedError {
    elapsed: Duration,
    source: BoxError,
}

// ---------------------------------------------------------------------------------------------
// Streaming read and write

/// An object's content and the CRC-32C recorded with it, if any.
pub type WithCrc = (Vec<u8>, Option<u32>);

/// The user metadata (`x-amz-meta-pitr-crc32c`) in which pitr-archive records the CRC-32C of
/// a WAL file's content (before compression) with its object, as eight hex digits: checked by
/// every restore before the file is handed over, as the `user.pitr.crc32c` attribute of a file
/// in a directory is. Objects without it (written by other tools) are checked by their content
/// alone.
pub const CRC_METADATA: &str = "pitr-crc32c";

/// The CRC-32C in `attributes`, if recorded. A value that is not eight hex digits counts as
/// none: the content is then checked as an object without one.
fn recorded_crc(attributes: &object_store::Attributes) -> Option<u32> {
    let value = attributes.get(&Attribute::Metadata(CRC_METADATA.into()))?;
    let text: &str = value.as_ref();
    (text.len() == 8)
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

/// The content of one object, read as it arrives (see [`Store::get_reader`]). Read errors are
/// `io::Error`s wrapping an [`Error`].
pub struct ObjectReader<'a> {
    store: &'a Store,
    key: String,
    crc32c: Option<u32>,
    size: u64,
    stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl ObjectReader<'_> {
    /// The object's size, as the store announced it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The CRC-32C recorded with the object ([`CRC_METADATA`]), if any.
    pub fn recorded_crc32c(&self) -> Option<u32> {
        self.crc32c
    }
}

impl fmt::Debug for ObjectReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let store = self.store;
            let next = store.block(async { self.stream.next().await.transpose() });
            match next {
                Ok(Some(chunk)) => self.chunk = chunk,
                Ok(None) => return Ok(0),
                Err((class, e)) => {
                    return Err(io::Error::other(store.error(class, "GET", &self.key, e)));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A multipart upload in progress (see [`Store::upload`]): write the content, then
/// [`commit`](Upload::commit). Memory stays within part size × (concurrency + 1) whatever the
/// object's size. Write errors are `io::Error`s wrapping an [`Error`]; after one, drop the upload.
pub struct Upload {
    store: Store,
    key: String,
    writer: Option<WriteMultipart>,
    written: u64,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Sends the last part and completes the upload: the object appears under its key, replacing
    /// any object there. Returns the number of bytes stored.
    pub fn commit(mut self) -> Result<u64, Error> {
        let store = &self.store;
        let writer = self.writer.take().ok_or_else(|| Error::Failed {
            endpoint: store.endpoint.clone(),
            bucket: store.url.bucket.clone(),
            key: store.url.full_key(&self.key),
            op: "COMPLETE MULTIPART",
            source: "the upload failed earlier".into(),
        })?;
        store
            .block(writer.finish())
            .map_err(|(class, e)| store.error(class, "COMPLETE MULTIPART", &self.key, e))?;
        Ok(self.written)
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let store = &self.store;
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("write to a failed upload"));
        };
        // Full parts start uploading as tasks on the store's runtime; waiting for capacity
        // drives them and bounds the memory held.
        {
            let _entered = store.runtime.enter();
            writer.write(buf);
        }
        let concurrency = store.settings.upload_concurrency.max(1);
        match store.block(writer.wait_for_capacity(concurrency)) {
            Ok(()) => {
                self.written += buf.len() as u64;
                Ok(buf.len())
            }
            Err((class, e)) => {
                if let Some(writer) = self.writer.take() {
                    let _ = store.block(writer.abort());
                }
                Err(io::Error::other(store.error(
                    class,
                    "UPLOAD PART",
                    &self.key,
                    e,
                )))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Best effort: an upload that cannot be aborted (store unreachable, or the process
            // killed before this runs) holds parts but no object under the final name. pitr
            // does not list such uploads; the bucket's lifecycle rule does away with them
            // (README, "Object storage": AbortIncompleteMultipartUpload).
            let _ = self.store.block(writer.abort());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// S3 allows 10,000 parts: an object of the expected size, a quarter larger, still fits,
    /// whatever its size; small objects keep the configured parts.
    #[test]
    fn parts_grow_so_that_a_large_object_stays_within_ten_thousand() {
        const MIB: u64 = 1 << 20;
        let configured = DEFAULT_PART_SIZE;
        assert_eq!(part_size_for(configured, 0), configured);
        assert_eq!(part_size_for(configured, 10 << 30), configured);
        for expected in [78 << 30, 79 << 30, 100 << 30, 1 << 40, 10 << 40, 40 << 40] {
            let part = part_size_for(configured, expected) as u64;
            assert!(part >= configured as u64, "{expected}");
            assert_eq!(part % MIB, 0, "{expected}");
            assert!(part <= 5 << 30, "{expected}");
            let grown = expected + expected / 4;
            assert!(
                grown.div_ceil(part) <= 10_000 || part == 5 << 30,
                "{expected}: {part}-byte parts make {} parts",
                grown.div_ceil(part)
            );
        }
        // The fixed 8 MiB parts of before could not hold a 100 GiB object.
        assert!((100u64 << 30).div_ceil(configured as u64) > 10_000);
        // A configured part size larger than needed stays.
        assert_eq!(part_size_for(64 << 20, 100 << 30), 64 << 20);
    }

    #[test]
    fn options_override_the_environment_and_are_handed_on_without_secrets() {
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("GKid".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("env-secret".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://env:3900".to_owned()),
            "AWS_REGION" => Some("env-region".to_owned()),
            _ => None,
        };
        let d = tempfile::tempdir().unwrap();
        let key_file = d.path().join("key");
        std::fs::write(
            &key_file,
            "[default]\naws_access_key_id = GKfile\naws_secret_access_key = file-secret\n",
        )
        .unwrap();
        let options = S3Options {
            endpoint: Some("http://opt:3900".into()),
            region: None,
            addressing: Some("virtual".into()),
            key_file: Some(key_file.clone()),
            conditional_writes: true,
            retry_seconds: Some(7),
            ca_file: None,
        };
        let s = options.settings(env).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://opt:3900"));
        assert_eq!(s.region.as_deref(), Some("env-region"));
        assert_eq!(s.path_style, Some(false));
        assert!(s.if_none_match);
        assert_eq!(s.retry_budget, Duration::from_secs(7));
        let creds = s.credentials.unwrap();
        assert_eq!(creds.access_key_id, "GKfile");
        assert_eq!(creds.secret_access_key, Secret::new("file-secret"));
        let args = options.to_args().join(" ");
        assert_eq!(
            args,
            format!(
                "--s3-endpoint http://opt:3900 --s3-addressing virtual --s3-key-file {} \
                 --s3-retry-seconds 7 --s3-conditional-writes",
                key_file.display()
            )
        );
        let plain = S3Options::default().settings(env).unwrap();
        assert!(!plain.if_none_match, "conditional writes must be asked for");
        assert_eq!(plain.endpoint.as_deref(), Some("http://env:3900"));
        let bad = S3Options {
            addressing: Some("dns".into()),
            ..S3Options::default()
        };
        assert_eq!(
            bad.settings(env).unwrap_err().to_string(),
            "--s3-addressing dns is neither path nor virtual"
        );
        // A CA file is checked when the settings are made, and handed on.
        let ca = d.path().join("ca.pem");
        let with_ca = |path: &Path| S3Options {
            ca_file: Some(path.to_path_buf()),
            ..S3Options::default()
        };
        assert_eq!(
            with_ca(&ca).settings(env).unwrap_err().to_string(),
            format!(
                "cannot use S3 CA file {}: No such file or directory (os error 2)",
                ca.display()
            )
        );
        std::fs::write(&ca, "not a certificate\n").unwrap();
        assert_eq!(
            with_ca(&ca).settings(env).unwrap_err().to_string(),
            format!(
                "cannot use S3 CA file {}: no PEM certificate in it",
                ca.display()
            )
        );
        assert_eq!(
            with_ca(&ca).to_args(),
            ["--s3-ca-file".to_owned(), ca.display().to_string()]
        );
    }

    #[test]
    fn url_parses_bucket_and_prefix() {
        let url = S3Url::parse("s3://pitr-archive/db1/wal/").unwrap();
        assert_eq!(url.bucket(), "pitr-archive");
        assert_eq!(url.prefix(), "db1/wal");
        assert_eq!(url.to_string(), "s3://pitr-archive/db1/wal");
        assert_eq!(url.full_key("x.zst"), "db1/wal/x.zst");
        let root = S3Url::parse("s3://bucket").unwrap();
        assert_eq!((root.bucket(), root.prefix()), ("bucket", ""));
        assert_eq!(root.full_key("x"), "x");
        assert_eq!(S3Url::parse("s3://bucket/").unwrap(), root);
        assert_eq!("s3://b.c-d/p".parse::<S3Url>().unwrap().prefix(), "p");
    }

    #[test]
    fn url_errors_name_the_text() {
        assert_eq!(
            S3Url::parse("/srv/wal").unwrap_err().to_string(),
            "\"/srv/wal\" is not an S3 location (s3://BUCKET/PREFIX)"
        );
        assert_eq!(
            S3Url::parse("s3:///x").unwrap_err().to_string(),
            "\"s3:///x\" names no bucket (s3://BUCKET/PREFIX)"
        );
        assert_eq!(
            S3Url::parse("s3://My_Bucket/x").unwrap_err().to_string(),
            "\"s3://My_Bucket/x\": bucket name \"My_Bucket\" is not 3 to 63 lowercase letters, \
             digits, '.' and '-'"
        );
        assert!(matches!(
            S3Url::parse("s3://ab"),
            Err(UrlError::BadBucket { .. })
        ));
        assert_eq!(
            S3Url::parse("s3://bucket/a//b").unwrap_err().to_string(),
            "\"s3://bucket/a//b\": prefix \"a//b\" has an empty, \".\" or \"..\" segment"
        );
        assert!(matches!(
            S3Url::parse("s3://bucket/a/../b"),
            Err(UrlError::BadPrefix { .. })
        ));
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_come_from_the_standard_variables() {
        let s = Settings::from_env_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "GKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ("AWS_SESSION_TOKEN", "t0ken-value"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
        ]));
        let creds = s.credentials.as_ref().unwrap();
        assert_eq!(creds.access_key_id, "GKID");
        assert_eq!(creds.secret_access_key, Secret::new("s3cr3t-value"));
        assert_eq!(creds.session_token, Some(Secret::new("t0ken-value")));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.endpoint_display(), "http://127.0.0.1:3900");

        let s = Settings::from_env_vars(vars(&[
            ("AWS_REGION", "garage"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://a"),
            ("AWS_ENDPOINT_URL_S3", "http://b/"),
            ("AWS_ACCESS_KEY_ID", "GKID"),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ]));
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert_eq!(s.endpoint_display(), "http://b");
        assert_eq!(s.credentials, None, "an empty secret is no secret");
        assert_eq!(
            Settings::default().endpoint_display(),
            "https://s3.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn key_file_reads_the_default_section() {
        let text = "# pitr\n[other]\naws_access_key_id = WRONG\n[default]\n\
                    aws_access_key_id = GKID\naws_secret_access_key=abc=def\n";
        let creds = parse_key_file(text).unwrap();
        assert_eq!(creds.access_key_id, "GKID");
        assert_eq!(creds.secret_access_key, Secret::new("abc=def"));
        assert_eq!(creds.session_token, None);
        let bare = parse_key_file("AWS_ACCESS_KEY_ID = a\nAWS_SECRET_ACCESS_KEY = b\n").unwrap();
        assert_eq!(bare.access_key_id, "a");
        assert_eq!(
            parse_key_file("aws_access_key_id = a\n"),
            Err(KeyFileError::Missing("aws_secret_access_key"))
        );
        assert_eq!(
            parse_key_file("aws_access_key_id = a\nhunter2\n"),
            Err(KeyFileError::Syntax(2))
        );
    }

    #[test]
    fn key_file_errors_name_the_file_and_never_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "aws_access_key_id = a\nsupersecretvalue\n").unwrap();
        let err = Settings::default().with_key_file(&path).unwrap_err();
        let text = format!("{err} {err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot parse line 2 of S3 key file {}", path.display())
        );
        assert!(!text.contains("supersecretvalue"), "{text}");
        let missing = Settings::default()
            .with_key_file(&dir.path().join("none"))
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "cannot read S3 key file {}",
                dir.path().join("none").display()
            )
        );
        std::fs::write(&path, "aws_access_key_id = a\naws_secret_access_key = sv\n").unwrap();
        let s = Settings::default().with_key_file(&path).unwrap();
        assert_eq!(s.credentials.unwrap().secret_access_key, Secret::new("sv"));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Settings::from_env_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "GKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ("AWS_SESSION_TOKEN", "t0ken-value"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ]));
        let store = Store::open(&S3Url::parse("s3://bucket/p").unwrap(), &s).unwrap();
        let shown = format!("{s:?} {store:?}");
        assert!(shown.contains("GKID"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("t0ken-value"), "{shown}");
        assert!(shown.contains("Secret(redacted)"), "{shown}");
    }

    #[test]
    fn open_without_credentials_is_an_error_with_a_hint() {
        let err =
            Store::open(&S3Url::parse("s3://bucket").unwrap(), &Settings::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no S3 access key for s3://bucket at https://s3.us-east-1.amazonaws.com"
        );
        assert!(err.hint().contains("AWS_ACCESS_KEY_ID"));
    }

    #[test]
    fn bad_keys_are_refused_before_any_request() {
        let s = Settings::from_env_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "GKID"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ]));
        let store = Store::open(&S3Url::parse("s3://bucket/p").unwrap(), &s).unwrap();
        for key in ["", "/a", "a/", "a//b", "a/../b", "."] {
            let err = store.head(key).unwrap_err();
            assert!(matches!(err, Error::BadKey { .. }), "{key:?}: {err}");
        }
    }

    #[test]
    fn server_error_status_is_read_from_the_text() {
        assert!(server_error_status(
            "Generic S3 error: Error performing PUT http://x in 1s - Server returned non-2xx \
             status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>"
        ));
        assert!(!server_error_status(
            "Server returned non-2xx status code: 400 Bad Request"
        ));
        assert!(!server_error_status("status code: 5"));
    }
}
