//! Progress of a long copy: bytes done of the (estimated) total, rate and ETA. pitr-backup
//! counts the data it copies, `pitr-restore --from-backup` the archive it extracts.
//!
//! On a terminal (stderr is a tty) one status line is redrawn about twice a second; into the
//! log goes a `progress:` line every interval. pitr-backup estimates its total by a first,
//! stat-only walk of the same files, so it is close but not exact (files grow and shrink while
//! the server runs).

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use crate::log_info;

/// How often the terminal line is redrawn.
const TTY_INTERVAL: Duration = Duration::from_millis(500);

/// Progress counters and their reporting.
#[derive(Debug)]
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last_log: Instant,
    last_tty: Instant,
    interval: Duration,
    tty: bool,
    drawn: bool,
}

pub use crate::log::human_bytes as human;

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// Starts counting towards `total` bytes.
    pub fn new(total: u64, interval: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            started: now,
            last_log: now,
            last_tty: now,
            interval,
            tty: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Counts `n` more bytes, reporting when it is time.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        let now = Instant::now();
        if self.tty && now.duration_since(self.last_tty) >= TTY_INTERVAL {
            self.last_tty = now;
            let line = self.line();
            let mut err = std::io::stderr().lock();
            // A terminal that went away is no reason to stop a backup.
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
            self.drawn = true;
        }
        if now.duration_since(self.last_log) >= self.interval {
            self.last_log = now;
            self.log();
        }
    }

    /// Logs the current state as one `progress:` line (clearing the terminal line first).
    pub fn log(&mut self) {
        self.clear();
        log_info!("progress: {}", self.line());
    }

    /// Clears the terminal status line, so that a log line can be written.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / elapsed;
        let total = self.total.max(self.done);
        let pct = if total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / total as f64
        };
        let eta = if rate > 0.0 && total > self.done {
            duration(Duration::from_secs_f64((total - self.done) as f64 / rate))
        } else {
            "0s".to_string()
        };
        format!(
            "{} of {} ({pct:.0}%), {}/s, ETA {eta}",
            human(self.done),
            human(total),
            human(rate as u64)
        )
    }
}

/// A reader that counts what is read through it into a [`Progress`].
#[derive(Debug)]
pub struct Reading<R> {
    inner: R,
    progress: Progress,
}

impl<R> Reading<R> {
    /// Counts what is read from `inner` towards `total` bytes, logging every `interval`.
    pub fn new(inner: R, total: u64, interval: Duration) -> Reading<R> {
        Reading {
            inner,
            progress: Progress::new(total, interval),
        }
    }
}

impl<R: Read> Read for Reading<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_counts_what_passes_through() {
        let data = vec![7u8; 10_000];
        let mut r = Reading::new(&data[..], 10_000, Duration::from_secs(3600));
        r.progress.tty = false;
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(
            r.progress.line().starts_with("9.8 KiB of 9.8 KiB (100%)"),
            "{}",
            r.progress.line()
        );
    }

    #[test]
    fn human_sizes_and_line() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(duration(Duration::from_secs(3725)), "1h02m");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        let mut p = Progress::new(1000, Duration::from_secs(3600));
        p.tty = false;
        p.add(500);
        assert!(
            p.line().starts_with("500 B of 1000 B (50%), "),
            "{}",
            p.line()
        );
    }
}
