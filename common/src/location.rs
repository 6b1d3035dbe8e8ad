//! `[CODEC=]TARGET` locations, as given to `--dst-local`, `--dst-remote`, `--dst-pipe` and
//! `--source`.
//!
//! The codec prefix is recognised when the text before the first `=` contains no `/` and looks
//! like a codec name (letters, digits, `:` for a level); anything else is the target itself, so
//! `/srv/a=b` is a directory. A target is a local directory, an rsync target
//! (`rsync://host[:port]/module/path`, `host::module/path`, `[user@]host:/path`) or, for pipes,
//! a program.

use std::fmt;
use std::path::PathBuf;

use crate::compress::{self, Codec};

/// What kind of location an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A local directory.
    Local,
    /// An rsync target, reached with the `rsync` program.
    Remote,
    /// A program that receives the file on stdin and its name as argv\[1\].
    Pipe,
}

impl Kind {
    /// The option that takes this kind, for messages.
    pub fn option(&self) -> &'static str {
        match self {
            Kind::Local => "--dst-local",
            Kind::Remote => "--dst-remote",
            Kind::Pipe => "--dst-pipe",
        }
    }

    /// A short name, used in state files.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Remote => "remote",
            Kind::Pipe => "pipe",
        }
    }
}

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// Its kind.
    pub kind: Kind,
    /// How files are stored there.
    pub codec: Codec,
    /// The target as given, without the codec prefix and without trailing slashes (a lone `/`
    /// stays).
    pub target: String,
}

/// A location that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad codec prefix.
    #[error("{spec}: {source}")]
    Codec {
        /// The location as given.
        spec: String,
        /// Why.
        #[source]
        source: compress::Error,
    },
    /// Nothing after the prefix.
    #[error("\"{0}\" names no target")]
    Empty(String),
    /// A remote location that is not an rsync target.
    #[error("\"{0}\" is not an rsync target (rsync://host/module/path, host::module/path or [user@]host:/path)")]
    NotRsync(String),
    /// A local location that looks like a remote one.
    #[error("\"{0}\" looks like an rsync target, not a local directory")]
    NotLocal(String),
}

/// Splits an optional codec prefix off `spec`.
pub fn split_codec(spec: &str) -> Result<(Codec, &str), Error> {
    if let Some((prefix, rest)) = spec.split_once('=') {
        let looks_like_codec = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-');
        if looks_like_codec {
            let codec = Codec::parse(prefix).map_err(|source| Error::Codec {
                spec: spec.to_string(),
                source,
            })?;
            return Ok((codec, rest));
        }
    }
    Ok((Codec::None, spec))
}

/// True for the forms rsync treats as remote.
pub fn is_rsync_target(t: &str) -> bool {
    if t.starts_with("rsync://") {
        return true;
    }
    // host:path or host::module — a colon before any slash.
    match (t.find(':'), t.find('/')) {
        (Some(c), Some(s)) => c > 0 && c < s,
        (Some(c), None) => c > 0,
        _ => false,
    }
}

fn trim_slashes(t: &str) -> String {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() && t.starts_with('/') {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

impl Location {
    /// Parses `[CODEC=]TARGET` for an option of `kind`.
    pub fn parse(kind: Kind, spec: &str) -> Result<Self, Error> {
        let (codec, target) = split_codec(spec)?;
        if target.is_empty() {
            return Err(Error::Empty(spec.to_string()));
        }
        match kind {
            Kind::Remote if !is_rsync_target(target) => {
                return Err(Error::NotRsync(spec.to_string()))
            }
            Kind::Local if is_rsync_target(target) => {
                return Err(Error::NotLocal(spec.to_string()))
            }
            _ => {}
        }
        let target = match kind {
            Kind::Pipe => target.to_string(),
            _ => trim_slashes(target),
        };
        Ok(Location {
            kind,
            codec,
            target,
        })
    }

    /// The local directory, for local locations.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.kind == Kind::Local).then(|| PathBuf::from(&self.target))
    }

    /// The name a WAL file gets here: the WAL name plus the codec's extension.
    pub fn file_name(&self, wal_name: &str) -> String {
        format!("{wal_name}{}", self.codec.extension())
    }

    /// For rsync targets: the remote path of `file_name`.
    pub fn remote_path(&self, file_name: &str) -> String {
        if self.target.ends_with('/') || self.target.ends_with(':') {
            format!("{}{file_name}", self.target)
        } else {
            format!("{}/{file_name}", self.target)
        }
    }

    /// A stable key naming this location (kind, codec, target), used in state files; unlike
    /// OmniPITR's, two locations differing only by codec have different keys.
    pub fn key(&self) -> String {
        format!("{} {} {}", self.kind.name(), self.codec, self.target)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.codec {
            Codec::None => f.write_str(&self.target),
            c => write!(f, "{c}={}", self.target),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_with_and_without_codec() {
        let l = Location::parse(Kind::Local, "zstd:19=/srv/wal/").unwrap();
        assert_eq!(l.codec, Codec::Zstd(19));
        assert_eq!(l.target, "/srv/wal");
        assert_eq!(
            l.file_name("000000010000000000000001"),
            "000000010000000000000001.zst"
        );
        let l = Location::parse(Kind::Local, "/srv/a=b").unwrap();
        assert_eq!((l.codec, l.target.as_str()), (Codec::None, "/srv/a=b"));
        let l = Location::parse(Kind::Local, "gzip=relative/dir").unwrap();
        assert_eq!(
            (l.codec, l.target.as_str()),
            (Codec::Gzip(6), "relative/dir")
        );
        assert_eq!(Location::parse(Kind::Local, "/").unwrap().target, "/");
    }

    #[test]
    fn remote_forms() {
        for t in [
            "rsync://127.0.0.1:8873/wal_archive/",
            "standby1::wal_archive/sub",
            "postgres@standby1:/var/lib/wal",
            "standby1:/var/lib/wal",
        ] {
            let l = Location::parse(Kind::Remote, &format!("gzip={t}")).unwrap();
            assert_eq!(l.codec, Codec::Gzip(6));
            assert_eq!(l.target, t.trim_end_matches('/'));
        }
        let l = Location::parse(Kind::Remote, "rsync://h/m/").unwrap();
        assert_eq!(l.remote_path("x.gz"), "rsync://h/m/x.gz");
        assert_eq!(
            Location::parse(Kind::Remote, "/local/dir").unwrap_err().to_string(),
            "\"/local/dir\" is not an rsync target (rsync://host/module/path, host::module/path or [user@]host:/path)"
        );
        assert!(matches!(
            Location::parse(Kind::Local, "host:/x"),
            Err(Error::NotLocal(_))
        ));
    }

    #[test]
    fn codec_errors_name_the_spec() {
        assert_eq!(
            Location::parse(Kind::Local, "lz5=/dir")
                .unwrap_err()
                .to_string(),
            "lz5=/dir: unknown codec \"lz5\""
        );
        assert!(matches!(
            Location::parse(Kind::Local, "zstd="),
            Err(Error::Empty(_))
        ));
    }

    #[test]
    fn keys_differ_by_codec() {
        let a = Location::parse(Kind::Local, "/a").unwrap();
        let b = Location::parse(Kind::Local, "gzip=/a").unwrap();
        assert_ne!(a.key(), b.key());
        assert_eq!(b.key(), "local gzip:6 /a");
    }
}
