//! Times for people: local-time stamps in output, ages, and the `errors` check's `--from`.
//!
//! Local time comes from `pitr_common::log::expand_time_template` (strftime through the C
//! library, the tools' own time zone rules), so no time zone database is read here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds as a `SystemTime` (negative and non-finite values give the epoch).
pub fn from_unix(secs: f64) -> SystemTime {
    if secs.is_finite() && secs > 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    } else {
        UNIX_EPOCH
    }
}

/// `2026-11-25 02:43:15 +0000` in this machine's local time.
pub fn local(at: SystemTime) -> String {
    pitr_common::log::expand_time_template("^Y-^m-^d ^H:^M:^S ^z", at)
        .unwrap_or_else(|_| format!("{:.0}", crate::report::unix_seconds(at)))
}

pub use pitr_common::log::human_age as age;

/// The local UTC offset in seconds at `at`.
fn offset_at(at: SystemTime) -> Option<i64> {
    let z = pitr_common::log::expand_time_template("^z", at).ok()?;
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let v: i64 = digits.parse().ok()?;
    Some(sign * ((v / 100) * 3600 + (v % 100) * 60))
}

/// Parses `--from` as OmniPITR did: `YYYY-MM-DD HH:MM:SS` in local time, or a number of
/// seconds before `now`. Returns Unix seconds.
pub fn parse_from(text: &str, now: SystemTime) -> Result<f64, String> {
    let now_secs = crate::report::unix_seconds(now);
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: f64 = text.parse().map_err(|_| format!("{text:?} is too large"))?;
        return Ok(now_secs - secs);
    }
    let Some(as_utc) = crate::logscan::parse_civil(text) else {
        return Err(format!(
            "{text:?} is neither YYYY-MM-DD HH:MM:SS nor a number of seconds"
        ));
    };
    // The offset in force at that time: guess with the offset now, then settle on the offset
    // at the guess (twice covers a change of daylight saving time in between).
    let mut offset = offset_at(now).unwrap_or(0);
    for _ in 0..2 {
        let guess = as_utc - offset;
        offset = offset_at(from_unix(guess as f64)).unwrap_or(offset);
    }
    Ok((as_utc - offset) as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn from_is_seconds_ago_or_a_local_time_that_round_trips() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_574_595);
        assert_eq!(parse_from("60", now).unwrap(), 1_795_574_535.0);
        let t = parse_from("2026-11-25 02:43:15", now).unwrap();
        // Whatever the time zone, printing it in local time gives the text back.
        assert!(local(from_unix(t)).starts_with("2026-11-25 02:43:15 "));
        assert!(parse_from("yesterday", now).is_err());
        assert!(parse_from("2026-11-31 00:00:00", now).is_err());
    }
}
