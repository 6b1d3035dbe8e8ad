//! `[CODEC=]TARGET` locations, as given to `--dst-local`, `--dst-remote`, `--dst-pipe`,
//! `--source`, `--from-backup`, `--wal-source`, `--archive` and `--backup-dir`.
//!
//! The codec prefix is recognised when the text before the first `=` contains no `/` and looks
//! like a codec name (letters, digits, `:` for a level); anything else is the target itself, so
//! `/srv/a=b` is a directory. The target is typed ([`Target`]): a local directory, an rsync
//! target (`rsync://host[:port]/module/path`, `host::module/path`, `[user@]host:/path`), a
//! program, or a bucket and prefix on an object store (`s3://BUCKET/PREFIX`). Which kinds an option takes is said once, in [`Opt`]; [`Location::parse`] is the one
//! parser every binary uses, and [`parse_destinations`] the one reading of the `--dst-*`
//! options.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::compress::{self, Codec};
use crate::objstore::S3Url;

/// An rsync target: `rsync://host[:port]/module/path`, `host::module/path` or
/// `[user@]host:/path`, without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RsyncTarget(String);

impl RsyncTarget {
    /// True for the forms rsync treats as remote.
    pub fn is_rsync(t: &str) -> bool {
        if t.starts_with("rsync://") {
            return true;
        }
        // host:path or host::module: a colon before any slash.
        match (t.find(':'), t.find('/')) {
            (Some(c), Some(s)) => c > 0 && c < s,
            (Some(c), None) => c > 0,
            _ => false,
        }
    }

    /// True when rsync reaches it over a daemon connection of its own (`rsync://host/module`,
    /// `host::module`) rather than through a remote shell (`host:path`).
    pub fn is_daemon(&self) -> bool {
        let t = &self.0;
        t.starts_with("rsync://")
            || t.find("::")
                .is_some_and(|c| t.find('/').is_none_or(|s| c < s))
    }

    /// The target as rsync takes it, for the directory itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The remote path of `file_name` inside this target.
    pub fn join(&self, file_name: &str) -> String {
        if self.0.ends_with('/') || self.0.ends_with(':') {
            format!("{}{file_name}", self.0)
        } else {
            format!("{}/{file_name}", self.0)
        }
    }

    /// The target as a directory source for rsync (`…/`: its content, not itself).
    pub fn as_dir(&self) -> String {
        self.join("")
    }
}

/// Where a location is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A local directory.
    Dir(PathBuf),
    /// An rsync target, reached with the `rsync` program ([`crate::rsync`]).
    Rsync(RsyncTarget),
    /// A program that receives a file on stdin and its name as argv\[1\].
    Program(PathBuf),
    /// A bucket and key prefix on an object store (`s3://BUCKET/PREFIX`, [`crate::objstore`]).
    S3(S3Url),
}

/// The kinds of [`Target`], for saying which an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Target::Dir`].
    Dir,
    /// [`Target::Rsync`].
    Rsync,
    /// [`Target::Program`].
    Program,
    /// [`Target::S3`].
    S3,
}

impl Kind {
    /// A short name, used in state files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dir => "local",
            Kind::Rsync => "remote",
            Kind::Program => "pipe",
            Kind::S3 => "s3",
        }
    }
}

impl Target {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Target::Dir(_) => Kind::Dir,
            Target::Rsync(_) => Kind::Rsync,
            Target::Program(_) => Kind::Program,
            Target::S3(_) => Kind::S3,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dir(p) | Target::Program(p) => write!(f, "{}", p.display()),
            Target::Rsync(r) => f.write_str(r.as_str()),
            Target::S3(u) => write!(f, "{u}"),
        }
    }
}

/// The options that take a location, each with the kinds of target it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opt {
    /// `--dst-local`: a directory.
    DstLocal,
    /// `--dst-remote`: an rsync target or an object store.
    DstRemote,
    /// `--dst-pipe`: a program.
    DstPipe,
    /// `--dst-backup`: a directory, uncompressed.
    DstBackup,
    /// `--source` of pitr-restore: a directory or an object store.
    Source,
    /// `--wal-source` of pitr-backup: a directory or an object store.
    WalSource,
    /// `--from-backup` of pitr-restore: a directory, an rsync target or an object store.
    FromBackup,
    /// `--archive` of pitr-cleanup: a directory or an object store.
    Archive,
    /// `--backup-dir` of pitr-cleanup: a directory.
    BackupDir,
}

impl Opt {
    /// The option as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Opt::DstLocal => "--dst-local",
            Opt::DstRemote => "--dst-remote",
            Opt::DstPipe => "--dst-pipe",
            Opt::DstBackup => "--dst-backup",
            Opt::Source => "--source",
            Opt::WalSource => "--wal-source",
            Opt::FromBackup => "--from-backup",
            Opt::Archive => "--archive",
            Opt::BackupDir => "--backup-dir",
        }
    }

    /// The kinds of target it accepts; the first one that the text's syntax allows is taken.
    pub fn accepts(self) -> &'static [Kind] {
        match self {
            Opt::DstRemote => &[Kind::S3, Kind::Rsync],
            Opt::DstPipe => &[Kind::Program],
            Opt::FromBackup => &[Kind::S3, Kind::Rsync, Kind::Dir],
            Opt::Source | Opt::Archive | Opt::WalSource | Opt::BackupDir => &[Kind::S3, Kind::Dir],
            Opt::DstLocal | Opt::DstBackup => &[Kind::Dir],
        }
    }

    /// How to write a value, for HINT lines.
    pub fn syntax(self) -> &'static str {
        match self {
            Opt::DstRemote => {
                "write [CODEC=]TARGET with TARGET s3://BUCKET/PREFIX, rsync://host[:port]/module/path, host::module/path or [user@]host:/path"
            }
            Opt::Source | Opt::Archive | Opt::WalSource => "write [CODEC=]DIR or [CODEC=]s3://BUCKET/PREFIX with CODEC none, gzip or zstd",
            Opt::DstPipe => "write [CODEC=]PROGRAM",
            Opt::FromBackup => {
                "give the directory, rsync target or s3://BUCKET/PREFIX holding the backup sets"
            }
            Opt::BackupDir => {
                "give the directory or s3://BUCKET/PREFIX pitr-backup writes its sets to (an OmniPITR codec prefix, gzip=DIR, is accepted: sets are found by their meta files)"
            }
            _ => "write [CODEC=]DIR with CODEC none, gzip or zstd (optionally with a level, zstd:19=/srv/wal)",
        }
    }
}

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// How files are stored there.
    pub codec: Codec,
    /// Where.
    pub target: Target,
}

/// A location that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad codec prefix.
    #[error("{opt} {spec}: {source}", opt = .opt.name())]
    Codec {
        /// The option.
        opt: Opt,
        /// The location as given.
        spec: String,
        /// Why.
        #[source]
        source: compress::Error,
    },
    /// Nothing after the prefix.
    #[error("{opt} \"{spec}\" names no target", opt = .opt.name())]
    Empty {
        /// The option.
        opt: Opt,
        /// The location as given.
        spec: String,
    },
    /// A kind of target the option does not take.
    #[error("{opt} \"{spec}\" is not {what}", opt = .opt.name(), what = expected(*.opt))]
    WrongKind {
        /// The option.
        opt: Opt,
        /// The location as given.
        spec: String,
    },
    /// An `s3://` location that is not `s3://BUCKET/PREFIX`.
    #[error("{opt} {source}", opt = .opt.name())]
    S3 {
        /// The option.
        opt: Opt,
        /// Why.
        #[source]
        source: crate::objstore::UrlError,
    },
}

impl Error {
    /// The option concerned, whose [`Opt::syntax`] makes the HINT.
    pub fn opt(&self) -> Opt {
        match self {
            Error::Codec { opt, .. }
            | Error::Empty { opt, .. }
            | Error::WrongKind { opt, .. }
            | Error::S3 { opt, .. } => *opt,
        }
    }
}

fn expected(opt: Opt) -> &'static str {
    match opt.accepts() {
        [Kind::S3, Kind::Rsync] => {
            "an object store (s3://BUCKET/PREFIX) or an rsync target (rsync://host/module/path, host::module/path or [user@]host:/path)"
        }
        [Kind::S3, Kind::Dir] => {
            "a local directory or an object store (s3://BUCKET/PREFIX); it looks like an rsync target"
        }
        [Kind::Dir] => "a local directory (it looks like an rsync target or an object store)",
        _ => "a usable location",
    }
}

/// Splits an optional codec prefix off `spec`.
fn split_codec(opt: Opt, spec: &str) -> Result<(Codec, &str), Error> {
    if let Some((prefix, rest)) = spec.split_once('=') {
        let looks_like_codec = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-');
        if looks_like_codec {
            let codec = Codec::parse(prefix).map_err(|source| Error::Codec {
                opt,
                spec: spec.to_string(),
                source,
            })?;
            return Ok((codec, rest));
        }
    }
    Ok((Codec::None, spec))
}

fn trim_slashes(t: &str) -> &str {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() && t.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

impl Location {
    /// Parses `[CODEC=]TARGET` given to `opt`.
    pub fn parse(opt: Opt, spec: &str) -> Result<Self, Error> {
        let (codec, text) = split_codec(opt, spec)?;
        if text.is_empty() {
            return Err(Error::Empty {
                opt,
                spec: spec.to_string(),
            });
        }
        let s3 = text.starts_with("s3://");
        let rsync = !s3 && RsyncTarget::is_rsync(text);
        let kind = opt
            .accepts()
            .iter()
            .copied()
            .find(|k| match k {
                Kind::S3 => s3,
                Kind::Rsync => rsync,
                Kind::Dir => !rsync && !s3,
                Kind::Program => true,
            })
            .ok_or_else(|| Error::WrongKind {
                opt,
                spec: spec.to_string(),
            })?;
        let target = match kind {
            Kind::Dir => Target::Dir(PathBuf::from(trim_slashes(text))),
            Kind::Rsync => Target::Rsync(RsyncTarget(trim_slashes(text).to_string())),
            Kind::Program => Target::Program(PathBuf::from(text)),
            Kind::S3 => Target::S3(S3Url::parse(text).map_err(|source| Error::S3 { opt, source })?),
        };
        Ok(Location { codec, target })
    }

    /// A local directory location (for tests and callers that already hold a path).
    pub fn dir(codec: Codec, dir: impl Into<PathBuf>) -> Self {
        Location {
            codec,
            target: Target::Dir(dir.into()),
        }
    }

    /// The local directory, when this is one.
    pub fn as_dir(&self) -> Option<&Path> {
        match &self.target {
            Target::Dir(p) => Some(p),
            _ => None,
        }
    }

    /// The name a WAL file gets here: the WAL name plus the codec's extension.
    pub fn file_name(&self, wal_name: &str) -> String {
        format!("{wal_name}{}", self.codec.extension())
    }

    /// A stable key naming this location (kind, codec, target), used in state files; unlike
    /// OmniPITR's, two locations differing only by codec have different keys.
    pub fn key(&self) -> String {
        format!(
            "{} {} {}",
            self.target.kind().name(),
            self.codec,
            self.target
        )
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.codec {
            Codec::None => write!(f, "{}", self.target),
            c => write!(f, "{c}={}", self.target),
        }
    }
}

/// Parses the `--dst-local`, `--dst-remote` and `--dst-pipe` options of a binary into one list
/// of destinations, in that order, without duplicates.
pub fn parse_destinations(
    dst_local: &[String],
    dst_remote: &[String],
    dst_pipe: &[String],
) -> Result<Vec<Location>, Error> {
    let mut out: Vec<Location> = Vec::new();
    for (opt, specs) in [
        (Opt::DstLocal, dst_local),
        (Opt::DstRemote, dst_remote),
        (Opt::DstPipe, dst_pipe),
    ] {
        for spec in specs {
            let loc = Location::parse(opt, spec)?;
            if !out.contains(&loc) {
                out.push(loc);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_with_and_without_codec() {
        let l = Location::parse(Opt::DstLocal, "zstd:19=/srv/wal/").unwrap();
        assert_eq!(l.codec, Codec::Zstd(19));
        assert_eq!(l.as_dir(), Some(Path::new("/srv/wal")));
        assert_eq!(
            l.file_name("000000010000000000000001"),
            "000000010000000000000001.zst"
        );
        let l = Location::parse(Opt::Source, "/srv/a=b").unwrap();
        assert_eq!(l, Location::dir(Codec::None, "/srv/a=b"));
        let l = Location::parse(Opt::Archive, "gzip=relative/dir").unwrap();
        assert_eq!(
            l,
            Location::dir(
                Codec::Gzip(crate::compress::DEFAULT_GZIP_LEVEL),
                "relative/dir"
            )
        );
        assert_eq!(
            Location::parse(Opt::DstLocal, "/").unwrap().as_dir(),
            Some(Path::new("/"))
        );
    }

    #[test]
    fn rsync_daemon_forms_are_told_from_remote_shell_ones() {
        let daemon = |t: &str| RsyncTarget(t.to_string()).is_daemon();
        assert!(daemon("rsync://standby1/wal_archive"));
        assert!(daemon("rsync://standby1:8873/wal_archive/sub"));
        assert!(daemon("standby1::wal_archive"));
        assert!(daemon("standby1::wal_archive/sub"));
        assert!(!daemon("standby1:/var/lib/pgsql/wal_archive"));
        assert!(!daemon("postgres@standby1:wal/a::b"));
    }

    #[test]
    fn s3_forms() {
        let l = Location::parse(Opt::DstRemote, "zstd=s3://wal-bucket/db1/wal/").unwrap();
        assert_eq!(l.codec, Codec::Zstd(2));
        assert_eq!(
            l.target,
            Target::S3(S3Url::parse("s3://wal-bucket/db1/wal").unwrap())
        );
        assert_eq!(l.to_string(), "zstd:2=s3://wal-bucket/db1/wal");
        assert_eq!(l.key(), "s3 zstd:2 s3://wal-bucket/db1/wal");
        let l = Location::parse(Opt::Source, "s3://wal-bucket").unwrap();
        assert_eq!(l.target.kind(), Kind::S3);
        assert_eq!(
            Location::parse(Opt::Source, "s3://B/x")
                .unwrap_err()
                .to_string(),
            "--source \"s3://B/x\": bucket name \"B\" is not 3 to 63 lowercase letters, digits, '.' and '-'"
        );
        assert_eq!(
            Location::parse(Opt::DstLocal, "s3://bucket/x")
                .unwrap_err()
                .to_string(),
            "--dst-local \"s3://bucket/x\" is not a local directory (it looks like an rsync target or an object store)"
        );
    }

    #[test]
    fn remote_forms() {
        for t in [
            "rsync://127.0.0.1:8873/wal_archive/",
            "standby1::wal_archive/sub",
            "postgres@standby1:/var/lib/wal",
            "standby1:/var/lib/wal",
        ] {
            let l = Location::parse(Opt::DstRemote, &format!("gzip={t}")).unwrap();
            assert_eq!(l.codec, Codec::Gzip(crate::compress::DEFAULT_GZIP_LEVEL));
            assert_eq!(
                l.target,
                Target::Rsync(RsyncTarget(t.trim_end_matches('/').into()))
            );
        }
        let Target::Rsync(r) = Location::parse(Opt::DstRemote, "rsync://h/m/")
            .unwrap()
            .target
        else {
            panic!("not rsync")
        };
        assert_eq!(r.join("x.gz"), "rsync://h/m/x.gz");
        assert_eq!(r.as_dir(), "rsync://h/m/");
        assert_eq!(
            Location::parse(Opt::DstRemote, "/local/dir").unwrap_err().to_string(),
            "--dst-remote \"/local/dir\" is not an object store (s3://BUCKET/PREFIX) or an rsync target (rsync://host/module/path, host::module/path or [user@]host:/path)"
        );
        assert_eq!(
            Location::parse(Opt::DstLocal, "host:/x")
                .unwrap_err()
                .to_string(),
            "--dst-local \"host:/x\" is not a local directory (it looks like an rsync target or an object store)"
        );
        // --from-backup takes either, by syntax.
        assert_eq!(
            Location::parse(Opt::FromBackup, "h::backups")
                .unwrap()
                .target
                .kind(),
            Kind::Rsync
        );
        assert_eq!(
            Location::parse(Opt::FromBackup, "/srv/backups")
                .unwrap()
                .target
                .kind(),
            Kind::Dir
        );
        // A pipe program is taken as it is.
        let p = Location::parse(Opt::DstPipe, "zstd=/usr/bin/put-it").unwrap();
        assert_eq!(p.target, Target::Program("/usr/bin/put-it".into()));
    }

    #[test]
    fn codec_errors_name_the_option_and_spec() {
        assert_eq!(
            Location::parse(Opt::DstLocal, "lz5=/dir")
                .unwrap_err()
                .to_string(),
            "--dst-local lz5=/dir: unknown codec \"lz5\""
        );
        assert_eq!(
            Location::parse(Opt::Source, "zstd=")
                .unwrap_err()
                .to_string(),
            "--source \"zstd=\" names no target"
        );
    }

    #[test]
    fn destinations_are_parsed_in_order_without_duplicates() {
        let d = parse_destinations(
            &["/a".into(), "gzip=/a".into(), "/a/".into()],
            &["h::m".into()],
            &["/bin/cat".into()],
        )
        .unwrap();
        let keys: Vec<String> = d.iter().map(Location::key).collect();
        assert_eq!(
            keys,
            [
                "local none /a",
                "local gzip:1 /a",
                "remote none h::m",
                "pipe none /bin/cat"
            ]
        );
        let e = parse_destinations(&[], &["/x".into()], &[]).unwrap_err();
        assert_eq!(e.opt(), Opt::DstRemote);
    }
}
