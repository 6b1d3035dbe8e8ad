//! Recovery settings written by `pitr-restore --from-backup` into the restored data directory:
//! `restore_command` running this pitr-restore, the recovery target, and the signal file.
//!
//! Since PostgreSQL 12 there is no recovery.conf: settings go to `postgresql.auto.conf` and the
//! mode is chosen by `recovery.signal` (archive recovery: a missing file ends recovery) or
//! `standby.signal` (standby: never ends by itself). Values are written as PostgreSQL string
//! literals, and the restore_command's arguments are quoted for `sh`, which PostgreSQL runs it
//! with.
//!
//! A backed-up `postgresql.auto.conf` may still hold the settings of an earlier recovery: a
//! server restored to a target and promoted keeps its `recovery_target_*` lines, and so does
//! every backup of it. They are commented out before the new settings are appended (see
//! [`disable_earlier_recovery`]): PostgreSQL refuses to start with two kinds of target set
//! ("multiple recovery targets specified"), and a stale target, action or timeline that this
//! restore does not override would silently change where and how recovery ends. The same
//! settings left in `postgresql.conf` (a server once recovered by hand) are commented out there
//! too, each with a WARNING ([`disable_in_postgresql_conf`]).

use std::path::Path;

use pitr_common::fs::{self, Replace};
use pitr_common::pgconf::parameter_of;
use pitr_common::wal::Lsn;
use time::OffsetDateTime;

use crate::args::{TargetAction, TargetTimeline};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay everything in the archive (or follow it, as a standby).
    End,
    /// `recovery_target_time`, normalised to an explicit UTC offset.
    Time(OffsetDateTime),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_xid`.
    Xid(u64),
    /// `recovery_target_name` (a restore point made with `pg_create_restore_point`).
    Name(String),
    /// `recovery_target = 'immediate'`: stop as soon as the backup is consistent.
    Immediate,
}

/// A PostgreSQL configuration string literal: the configuration file parser takes a backslash
/// as an escape (`\n`, `\'`, `\\`), so backslashes are doubled as well as quotes (a
/// restore_command quoting an argument for `sh` as `'it'\''s'` holds one).
pub fn pg_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Formats a time the way PostgreSQL reads it back unambiguously.
pub fn format_time(t: OffsetDateTime) -> String {
    let off = t.offset();
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}{sign}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond(),
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// Parses `YYYY-MM-DD[ T]HH:MM[:SS[.frac]]` with an optional offset (`Z`, `+HH`, `+HHMM`,
/// `+HH:MM`, or ` UTC`). Without an offset the time is local to this machine (`local_offset`),
/// as a DBA on the machine would mean it; the value written for PostgreSQL always carries an
/// explicit offset, so that the server's `timezone` setting cannot shift it.
pub fn parse_time(text: &str, local_offset: time::UtcOffset) -> Option<OffsetDateTime> {
    let t = text.trim();
    let (date, rest) = t.split_at_checked(10)?;
    let mut dp = date.split('-');
    let year: i32 = dp.next()?.parse().ok()?;
    let month: u8 = dp.next()?.parse().ok()?;
    let day: u8 = dp.next()?.parse().ok()?;
    let rest = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T'))?;
    // Split the clock from the offset.
    let rest = rest.trim();
    let (clock, offset_text) = match rest.find(['+', '-', 'Z', ' ']) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let mut cp = clock.split(':');
    let hour: u8 = cp.next()?.parse().ok()?;
    let minute: u8 = cp.next()?.parse().ok()?;
    let (second, micro) = match cp.next() {
        None => (0u8, 0u32),
        Some(s) => match s.split_once('.') {
            None => (s.parse().ok()?, 0),
            Some((whole, frac)) => {
                if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let micro: u32 = format!("{frac:0<6}").parse().ok()?;
                (whole.parse().ok()?, micro)
            }
        },
    };
    if cp.next().is_some() {
        return None;
    }
    let offset = match offset_text {
        "" => local_offset,
        "Z" | "UTC" | "+00" | "-00" => time::UtcOffset::UTC,
        o => {
            let sign: i8 = if o.starts_with('-') { -1 } else { 1 };
            let digits: String = o
                .strip_prefix(['+', '-'])?
                .chars()
                .filter(|c| *c != ':')
                .collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let h: i8 = digits[..2].parse().ok()?;
            let m: i8 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let clock = time::Time::from_hms_micro(hour, minute, second, micro).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The full restore_command value.
    pub restore_command: String,
    /// Where to stop.
    pub target: Target,
    /// `recovery_target_action`, when a target is set.
    pub action: Option<TargetAction>,
    /// `recovery_target_timeline`.
    pub timeline: Option<TargetTimeline>,
    /// Standby (standby.signal) rather than archive recovery (recovery.signal).
    pub standby: bool,
    /// Whether to write `recovery_prefetch = off`: the restore_command waits (warm spare) and
    /// the server (15+) has WAL read-ahead.
    pub waits: bool,
}

/// The lines appended to postgresql.auto.conf.
pub fn render(s: &Settings, stamp: &str) -> String {
    let mut out =
        format!("\n# Recovery settings written by pitr-restore --from-backup on {stamp}\n");
    let mut set = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
    set("restore_command", pg_quote(&s.restore_command));
    if s.waits {
        // PostgreSQL 15+ reads WAL ahead and calls restore_command for the next segment before
        // replaying the current one; a waiting restore_command would stall replay.
        set("recovery_prefetch", pg_quote("off"));
    }
    match &s.target {
        Target::End => {}
        Target::Time(t) => set("recovery_target_time", pg_quote(&format_time(*t))),
        Target::Lsn(l) => set("recovery_target_lsn", pg_quote(&l.to_string())),
        Target::Xid(x) => set("recovery_target_xid", pg_quote(&x.to_string())),
        Target::Name(n) => set("recovery_target_name", pg_quote(n)),
        Target::Immediate => set("recovery_target", pg_quote("immediate")),
    }
    if let Some(a) = s.action {
        set("recovery_target_action", pg_quote(a.as_str()));
    }
    if let Some(t) = s.timeline {
        set("recovery_target_timeline", pg_quote(&t.value()));
    }
    out
}

/// Settings of an earlier recovery that [`disable_earlier_recovery`] comments out: the ones
/// pitr-restore writes (or leaves at PostgreSQL's default when not asked for), plus
/// `recovery_target_inclusive`, which qualifies a target.
const EARLIER_RECOVERY: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_inclusive",
    "recovery_target_action",
    "recovery_target_timeline",
];

/// What [`disable_earlier_recovery`] puts before a line it disables.
pub const DISABLED_PREFIX: &str = "# disabled by pitr-restore --from-backup: ";

/// `text` (a `postgresql.auto.conf`) with every line that sets a parameter of an earlier
/// recovery commented out, other lines as they were.
pub fn disable_earlier_recovery(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if parameter_of(line).is_some_and(|p| EARLIER_RECOVERY.contains(&p.as_str())) {
            out.push_str(DISABLED_PREFIX);
        }
        out.push_str(line);
    }
    out
}

/// Comments out the settings of an earlier recovery in the restored `postgresql.conf` and the
/// files it includes from inside the data directory (a server once recovered by hand keeps them
/// there, `conf.d/` included; PostgreSQL ignores them outside recovery, so every backup carries
/// them) and says which, with a WARNING each: left in place, a stale target would end this
/// recovery early (a warm spare promoted at once by a stale `recovery_target = 'immediate'`),
/// or with ours make PostgreSQL refuse to start. Files included from outside the data
/// directory are the host's, not the backup's, and are left alone. Returns the lines disabled.
pub fn disable_in_postgresql_conf(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let conf = data_dir.join(pitr_common::pg::POSTGRESQL_CONF);
    let inside = |p: &Path| {
        std::path::absolute(p)
            .ok()
            .zip(std::path::absolute(data_dir).ok())
            .is_some_and(|(p, d)| p.starts_with(d))
    };
    let mut disabled = Vec::new();
    for file in pitr_common::pgconf::included_files(&conf) {
        if inside(&file) {
            disabled.extend(disable_in_file(&file)?);
        }
    }
    if !disabled.is_empty() {
        pitr_common::log_hint!(
            "recovery settings come from pitr-restore's options (--target-*, --target-action, --target-timeline); the restored postgresql.auto.conf holds them"
        );
    }
    Ok(disabled)
}

/// Comments out the settings of an earlier recovery in one configuration file, durably, with a
/// WARNING each; returns them.
fn disable_in_file(conf: &Path) -> anyhow::Result<Vec<String>> {
    let text = match std::fs::read_to_string(conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fs::IoError::new("reading", conf, e).into()),
    };
    let disabled: Vec<String> = text
        .lines()
        .filter(|l| parameter_of(l).is_some_and(|p| EARLIER_RECOVERY.contains(&p.as_str())))
        .map(|l| l.trim().to_string())
        .collect();
    if disabled.is_empty() {
        return Ok(disabled);
    }
    let new = disable_earlier_recovery(&text);
    fs::write_durable(conf, Replace::Allow, None, |f| {
        Ok(fs::write_all(f, conf, new.as_bytes())?)
    })?;
    for line in &disabled {
        pitr_common::log_warning!(
            "{}: commented out \"{line}\", a setting of an earlier recovery",
            conf.display()
        );
    }
    Ok(disabled)
}

/// Appends the settings to `postgresql.auto.conf` (after disabling those of an earlier
/// recovery) and creates the signal file, durably.
pub fn write(data_dir: &Path, s: &Settings, stamp: &str) -> anyhow::Result<()> {
    let auto = data_dir.join(pitr_common::pg::POSTGRESQL_AUTO_CONF);
    let mut text = match std::fs::read_to_string(&auto) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n".to_string()
        }
        Err(e) => return Err(fs::IoError::new("reading", &auto, e).into()),
    };
    text = disable_earlier_recovery(&text);
    text.push_str(&render(s, stamp));
    fs::write_durable(&auto, Replace::Allow, None, |f| {
        Ok(fs::write_all(f, &auto, text.as_bytes())?)
    })?;
    let signal = if s.standby {
        pitr_common::pg::STANDBY_SIGNAL
    } else {
        pitr_common::pg::RECOVERY_SIGNAL
    };
    let path = data_dir.join(signal);
    fs::write_durable(&path, Replace::Allow, None, |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn quoting() {
        assert_eq!(pg_quote("it's"), "'it''s'");
        // A restore_command with a shell-quoted quote: the backslash survives the parser.
        assert_eq!(pg_quote(r"'it'\''s'"), r"'''it''\\''''s'''");
        assert_eq!(pg_quote(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn times() {
        let utc = time::UtcOffset::UTC;
        let plus2 = time::UtcOffset::from_hms(2, 0, 0).unwrap();
        assert_eq!(
            parse_time("2026-11-25 04:05:06", plus2),
            Some(datetime!(2026-11-25 04:05:06 +2))
        );
        assert_eq!(
            parse_time("2026-11-25T04:05:06.5+00", plus2),
            Some(datetime!(2026-11-25 04:05:06.5 UTC))
        );
        assert_eq!(
            parse_time("2026-11-25 04:05:06.123456-05:30", utc),
            Some(datetime!(2026-11-25 04:05:06.123456 -5:30))
        );
        assert_eq!(
            parse_time("2026-11-25 04:05 UTC", plus2),
            Some(datetime!(2026-11-25 04:05 UTC))
        );
        assert_eq!(
            parse_time("2026-11-25 04:05:06Z", plus2),
            Some(datetime!(2026-11-25 04:05:06 UTC))
        );
        for bad in [
            "yesterday",
            "2026-13-01 00:00:00",
            "2026-11-25",
            "2026-11-25 25:00:00",
            "2026-11-25 04:05:06+1",
            // Not a sign: refused, not a panic at a character boundary.
            "2026-11-25 04:05 é",
            "2026-11-25 04:05 0100",
        ] {
            assert_eq!(parse_time(bad, utc), None, "{bad}");
        }
        assert_eq!(
            format_time(datetime!(2026-11-25 04:05:06.5 -5:30)),
            "2026-11-25 04:05:06.500000-05:30"
        );
    }

    #[test]
    fn disables_the_settings_of_an_earlier_recovery() {
        let earlier = "# Do not edit this file manually!\n\
                       work_mem = '8MB'\n\
                       restore_command = '/x/pitr-restore --source /a %f %p'\n\
                       recovery_prefetch = 'off'\n\
                       recovery_target_name = 'fork'\n\
                       Recovery_Target_Action='promote'\n\
                       \trecovery_target_timeline 'latest'\n\
                       # recovery_target_xid = '5'\n\
                       recovery_target_xid_extra = 1";
        assert_eq!(
            disable_earlier_recovery(earlier),
            "# Do not edit this file manually!\n\
             work_mem = '8MB'\n\
             # disabled by pitr-restore --from-backup: restore_command = '/x/pitr-restore --source /a %f %p'\n\
             recovery_prefetch = 'off'\n\
             # disabled by pitr-restore --from-backup: recovery_target_name = 'fork'\n\
             # disabled by pitr-restore --from-backup: Recovery_Target_Action='promote'\n\
             # disabled by pitr-restore --from-backup: \trecovery_target_timeline 'latest'\n\
             # recovery_target_xid = '5'\n\
             recovery_target_xid_extra = 1"
        );
        assert_eq!(disable_earlier_recovery(""), "");
    }

    #[test]
    fn renders_settings() {
        let s = Settings {
            restore_command: "/x/pitr-restore --source /a %f %p".into(),
            target: Target::Name("before drop".into()),
            action: Some(TargetAction::Promote),
            timeline: Some(TargetTimeline::Latest),
            standby: false,
            waits: true,
        };
        assert_eq!(
            render(&s, "T"),
            "\n# Recovery settings written by pitr-restore --from-backup on T\n\
             restore_command = '/x/pitr-restore --source /a %f %p'\n\
             recovery_prefetch = 'off'\n\
             recovery_target_name = 'before drop'\n\
             recovery_target_action = 'promote'\n\
             recovery_target_timeline = 'latest'\n"
        );
    }
}
