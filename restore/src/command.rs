//! The options of a restore_command that are handed on, and the one rendering of them: into the
//! `restore_command` that `--from-backup` writes, and into the command line of the prefetch
//! worker.

use std::path::{Path, PathBuf};

use pitr_common::location::Location;
use pitr_common::wal::WalFileName;

/// What a `pitr-restore` restore_command runs with, besides `%f %p`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandOptions {
    /// `--data-dir`: written absolute by `--from-backup`, so that the restore_command also works
    /// from another working directory (`pg_rewind --restore-target-wal`).
    pub data_dir: Option<PathBuf>,
    /// `--source`, in order.
    pub sources: Vec<Location>,
    /// `--finish-trigger`.
    pub finish_trigger: Option<PathBuf>,
    /// `--recovery-delay` in seconds.
    pub recovery_delay: Option<u64>,
    /// `--streaming-replication`.
    pub streaming: bool,
    /// `--no-wait`.
    pub no_wait: bool,
    /// `--remove-unneeded`.
    pub remove_unneeded: bool,
    /// `--removal-pause-trigger`.
    pub removal_pause_trigger: Option<PathBuf>,
    /// `--poll-interval` in seconds, as given.
    pub poll_interval: Option<f64>,
    /// `--prefetch`.
    pub prefetch: Option<u32>,
    /// `--pgcontroldata-path`.
    pub pgcontroldata: Option<PathBuf>,
    /// `--log`.
    pub log: Option<String>,
    /// `--verbose`.
    pub verbose: bool,
    /// The `--s3-*` options (never a secret: those come from the environment or a key file).
    pub s3: pitr_common::objstore::S3Options,
}

fn path_arg(args: &mut Vec<String>, opt: &str, p: &Option<PathBuf>) {
    if let Some(p) = p {
        args.push(opt.into());
        args.push(p.to_string_lossy().into_owned());
    }
}

impl CommandOptions {
    /// The options as arguments, in a fixed order.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        path_arg(&mut a, "--data-dir", &self.data_dir);
        for s in &self.sources {
            a.push("--source".into());
            a.push(s.to_string());
        }
        path_arg(&mut a, "--finish-trigger", &self.finish_trigger);
        if let Some(d) = self.recovery_delay {
            a.extend(["--recovery-delay".into(), d.to_string()]);
        }
        if self.remove_unneeded {
            a.push("--remove-unneeded".into());
        }
        path_arg(
            &mut a,
            "--removal-pause-trigger",
            &self.removal_pause_trigger,
        );
        if let Some(p) = self.poll_interval {
            a.extend(["--poll-interval".into(), p.to_string()]);
        }
        if let Some(p) = self.prefetch {
            a.extend(["--prefetch".into(), p.to_string()]);
        }
        path_arg(&mut a, "--pgcontroldata-path", &self.pgcontroldata);
        if let Some(l) = &self.log {
            a.extend(["--log".into(), l.clone()]);
        }
        if self.verbose {
            a.push("--verbose".into());
        }
        a.extend(self.s3.to_args());
        if self.streaming {
            a.push("--streaming-replication".into());
        }
        if self.no_wait {
            a.push("--no-wait".into());
        }
        a
    }

    /// The prefetch worker's arguments: these options, then the segment after which it fills
    /// the spool.
    pub fn worker_args(&self, after: &WalFileName) -> Vec<String> {
        let mut a = self.to_args();
        a.push("--prefetch-worker".into());
        a.push(after.to_string());
        a
    }

    /// The `restore_command` value: `program` and these options, quoted for `sh`, then `%f %p`.
    /// PostgreSQL replaces `%f`, `%p`, `%r` and `%%` in it (and from 16 on refuses any other
    /// `%`), so a `%` of a path or value is written `%%`.
    pub fn restore_command(&self, program: &Path) -> String {
        let literal = |a: &str| shell_quote(a).replace('%', "%%");
        let mut parts = vec![literal(&program.to_string_lossy())];
        parts.extend(self.to_args().iter().map(|a| literal(a)));
        parts.push("%f".into());
        parts.push("%p".into());
        parts.join(" ")
    }
}

/// Quotes one argument for `sh`, which PostgreSQL runs restore_command with.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%+,-./:=@_^".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pitr_common::location::Opt;

    #[test]
    fn rendered_once_for_both_uses() {
        let o = CommandOptions {
            data_dir: Some("/var/lib/pg/new".into()),
            sources: vec![Location::parse(Opt::Source, "zstd=/srv/my wal").unwrap()],
            finish_trigger: Some("/tmp/finish".into()),
            recovery_delay: Some(600),
            remove_unneeded: true,
            prefetch: Some(4),
            ..CommandOptions::default()
        };
        assert_eq!(
            o.restore_command(Path::new("/opt/pitr/bin/pitr-restore")),
            "/opt/pitr/bin/pitr-restore --data-dir /var/lib/pg/new --source 'zstd:2=/srv/my wal' \
             --finish-trigger /tmp/finish --recovery-delay 600 --remove-unneeded --prefetch 4 %f %p"
        );
        let after = WalFileName::parse("000000010000000000000003").unwrap();
        let w = o.worker_args(&after);
        assert_eq!(
            w[w.len() - 2..],
            ["--prefetch-worker", "000000010000000000000003"]
        );
        assert_eq!(w[..w.len() - 2], o.to_args()[..]);
    }

    #[test]
    fn a_percent_sign_is_written_for_postgresql_to_keep() {
        let o = CommandOptions {
            sources: vec![Location::parse(Opt::Source, "/srv/wal%f/x").unwrap()],
            finish_trigger: Some("/tmp/100% done".into()),
            ..CommandOptions::default()
        };
        assert_eq!(
            o.restore_command(Path::new("/opt/pitr/bin/pitr-restore")),
            "/opt/pitr/bin/pitr-restore --source /srv/wal%%f/x \
             --finish-trigger '/tmp/100%% done' %f %p"
        );
        // The prefetch worker is started without PostgreSQL in between: no doubling.
        let after = WalFileName::parse("000000010000000000000003").unwrap();
        assert!(o
            .worker_args(&after)
            .contains(&"/tmp/100% done".to_string()));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("zstd=/srv/wal"), "zstd=/srv/wal");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
