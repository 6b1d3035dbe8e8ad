//! The prefetch worker for an object store: a pool of fetches that keeps the window full.
//!
//! From a store, a segment costs round trips more than CPU, so the worker keeps up to
//! [`FETCHES`] GETs in flight at any time instead of fetching a window and waiting for it to be
//! taken. A coordinator hands the names to fetch threads and watches the spool:
//!
//! - it never asks for a segment more than the window (`--prefetch`) past the newest one
//!   PostgreSQL has taken, so the spool stays bounded;
//! - PostgreSQL's progress is read from the spool: a segment the worker wrote that is gone was
//!   renamed into `%p` by a call, and PostgreSQL asks for segments in order, so everything up to
//!   the newest one taken is behind it (a segment the call fetched itself, before the worker's
//!   copy was ready, is removed as passed);
//! - the names ahead are looked up 16 at a time (one LIST from a store: [`Sources::find_many`]);
//! - it ends at the first segment not archived yet (the next call starts another worker), when
//!   nothing has been taken for [`WORKER_IDLE`] with the window full, or on an error.
//!
//! [`Sources::find_many`]: pitr_common::source::Sources::find_many

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Instant;

use pitr_common::wal::WalFileName;
use pitr_common::{fs, log_verbose, source};

use super::{Filler, PROGRESS_POLL, WORKER_IDLE};

/// Fetches in flight at once: enough to cover a store's round trip with the next segments
/// while replay takes one (the bench's restore from a 3-node Garage over https: 8 at once).
pub const FETCHES: usize = 8;

/// Names looked up at once ahead of the fetches (one LIST from a store).
const LOOKAHEAD: usize = 16;

/// A fetch to do, and its outcome as the fetch threads report it.
type Job = (WalFileName, source::Hit);
type Outcome = (WalFileName, anyhow::Result<bool>);

/// Runs the pool after `after`, the segment just handed over, until one of the ends in the
/// module documentation.
pub fn run(filler: &Filler, after: WalFileName) -> anyhow::Result<()> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Outcome>();
    std::thread::scope(|s| {
        for _ in 0..FETCHES {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || fetch_jobs(filler, job_rx, &done_tx));
        }
        drop(done_tx);
        // The senders go with the coordinator: the fetch threads then finish what they have
        // and end, and the scope waits for them.
        Pool::new(filler, after).coordinate(job_tx, &done_rx)
    })
}

/// A fetch thread: takes jobs until the coordinator is gone.
fn fetch_jobs(filler: &Filler, jobs: &Mutex<Receiver<Job>>, done: &Sender<Outcome>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let outcome = filler.fetch(&job, 1);
        if done.send((job.0, outcome)).is_err() {
            return;
        }
    }
}

/// The coordinator's state.
struct Pool<'a, 'f> {
    filler: &'a Filler<'f>,
    /// The newest segment PostgreSQL is known to have taken.
    after: WalFileName,
    /// Segment number of `after`.
    after_no: u64,
    /// The next name to look up.
    next_lookup: WalFileName,
    /// Found in the archive, not handed to a fetch thread yet, in order.
    found: VecDeque<Job>,
    /// A name after the found ones is not archived yet: nothing is looked up after it.
    archive_end: bool,
    /// Fetches handed out and not reported yet.
    in_flight: usize,
    /// Segments the worker spooled, by segment number, not yet seen taken.
    spooled: BTreeMap<u64, WalFileName>,
    /// When PostgreSQL last took a segment (or the worker started).
    last_progress: Instant,
}

/// What the coordinator does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Wait for a fetch to finish, or for PostgreSQL to take a segment.
    Wait,
    /// The worker is done.
    End(&'static str),
}

impl<'a, 'f> Pool<'a, 'f> {
    fn new(filler: &'a Filler<'f>, after: WalFileName) -> Self {
        let after_no = after.segno(filler.seg_size).map_or(0, |n| n.0);
        Pool {
            filler,
            after,
            after_no,
            next_lookup: after,
            found: VecDeque::new(),
            archive_end: false,
            in_flight: 0,
            spooled: BTreeMap::new(),
            last_progress: Instant::now(),
        }
    }

    fn coordinate(mut self, jobs: Sender<Job>, done: &Receiver<Outcome>) -> anyhow::Result<()> {
        // The first lookup starts after `after`.
        self.next_lookup = self.after.next(self.filler.seg_size)?;
        loop {
            self.see_progress()?;
            if let Next::End(why) = self.schedule(&jobs)? {
                log_verbose!("prefetch worker: {why} after {}; ending", self.after);
                return Ok(());
            }
            match done.recv_timeout(PROGRESS_POLL) {
                Ok(outcome) => self.finished(outcome)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the prefetch worker's fetch threads are gone")
                }
            }
            // Drain whatever else finished meanwhile.
            while let Ok(outcome) = done.try_recv() {
                self.finished(outcome)?;
            }
        }
    }

    /// A fetch thread's report: a write error ends the worker; a segment that cannot be used
    /// ends the lookups there (the foreground call meets it, logs it and refuses it).
    fn finished(&mut self, (name, outcome): Outcome) -> anyhow::Result<()> {
        self.in_flight -= 1;
        if outcome? {
            let no = name.segno(self.filler.seg_size)?.0;
            if no > self.after_no {
                self.spooled.insert(no, name);
            } else {
                // Taken by a call before the copy was ready: this copy is passed.
                fs::remove_file_if_exists(&self.filler.spool.path(&name))?;
            }
        } else {
            self.archive_end = true;
            self.found.clear();
        }
        Ok(())
    }

    /// Moves `after` to the newest spooled segment PostgreSQL took, and removes what it left
    /// behind (copies of segments it fetched itself).
    fn see_progress(&mut self) -> anyhow::Result<()> {
        let Some((&no, &name)) = self
            .spooled
            .iter()
            .rev()
            .find(|(_, n)| !self.filler.spool.has(n))
        else {
            return Ok(());
        };
        self.after = name;
        self.after_no = no;
        self.last_progress = Instant::now();
        let passed: Vec<u64> = self.spooled.range(..=no).map(|(&k, _)| k).collect();
        for k in passed {
            if let Some(n) = self.spooled.remove(&k) {
                fs::remove_file_if_exists(&self.filler.spool.path(&n))?;
            }
        }
        Ok(())
    }

    /// Hands out fetches while fewer than [`FETCHES`] are in flight and the window has room;
    /// says when the worker is done.
    fn schedule(&mut self, jobs: &Sender<Job>) -> anyhow::Result<Next> {
        while self.in_flight < FETCHES {
            let Some(job) = self.next_found()? else { break };
            jobs.send(job)
                .map_err(|_| anyhow::anyhow!("the prefetch worker's fetch threads are gone"))?;
            self.in_flight += 1;
        }
        if self.in_flight > 0 {
            return Ok(Next::Wait);
        }
        if self.archive_end && self.found.is_empty() {
            return Ok(Next::End("the next segment is not archived yet"));
        }
        if self.last_progress.elapsed() >= WORKER_IDLE {
            return Ok(Next::End("nothing taken for a while"));
        }
        Ok(Next::Wait)
    }

    /// The next segment to fetch if it is inside the window: from the lookups done, or after a
    /// new lookup of the next [`LOOKAHEAD`] names. Segments already spooled are skipped.
    fn next_found(&mut self) -> anyhow::Result<Option<Job>> {
        let window_end = self.after_no + self.filler.window;
        loop {
            if self.found.is_empty() && !self.archive_end {
                self.look_ahead()?;
            }
            let Some((name, _)) = self.found.front() else {
                return Ok(None);
            };
            let no = name.segno(self.filler.seg_size)?.0;
            if no > window_end {
                return Ok(None);
            }
            let Some(job) = self.found.pop_front() else {
                return Ok(None);
            };
            if no <= self.after_no || self.spooled.contains_key(&no) {
                continue;
            }
            if self.filler.spool.has(&job.0) {
                // Left by an earlier worker of this boot and still wanted.
                self.spooled.insert(no, job.0);
                continue;
            }
            return Ok(Some(job));
        }
    }

    /// Looks up the next [`LOOKAHEAD`] names; the found ones up to the first missing one are
    /// queued. An error looking ends the lookups: the foreground call meets it and reports it.
    fn look_ahead(&mut self) -> anyhow::Result<()> {
        let mut names = Vec::with_capacity(LOOKAHEAD);
        let mut name = self.next_lookup;
        for _ in 0..LOOKAHEAD {
            names.push(name);
            name = name.next(self.filler.seg_size)?;
        }
        let hits = match self.filler.sources.find_many(&names) {
            Ok(hits) => hits,
            Err(e) => {
                log_verbose!("not prefetching after {}: {e}", self.after);
                self.archive_end = true;
                return Ok(());
            }
        };
        let before = self.found.len();
        self.found.extend(
            names
                .into_iter()
                .zip(hits)
                .map_while(|(n, hit)| hit.map(|h| (n, h))),
        );
        if self.found.len() - before < LOOKAHEAD {
            self.archive_end = true;
        }
        self.next_lookup = name;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{dir_sources, filler, new_spool};
    use super::*;
    use pitr_common::wal::SegSize;
    use pitr_common::walcheck;
    use std::path::Path;
    use std::time::Duration;

    fn size() -> SegSize {
        SegSize::new(1 << 20).unwrap()
    }

    fn names(first: u64, n: u64) -> Vec<WalFileName> {
        (first..first + n)
            .map(|i| WalFileName::parse(&format!("0000000100000000{i:08X}")).unwrap())
            .collect()
    }

    fn archive(dir: &Path, segments: &[WalFileName]) {
        for n in segments {
            std::fs::write(
                dir.join(n.to_string()),
                walcheck::fake_switch_segment(n, size(), 7),
            )
            .unwrap();
        }
    }

    fn spooled(spool: &super::super::Spool) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(spool.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| !f.starts_with('.'))
            .collect();
        left.sort();
        left
    }

    #[test]
    fn the_pool_keeps_the_window_full_as_segments_are_taken_and_ends_at_the_archive_end() {
        let (_d, spool) = new_spool();
        let archive_dir = tempfile::tempdir().unwrap();
        // Segments 5..=24 are archived; 25 is not.
        let all = names(5, 20);
        archive(archive_dir.path(), &all);
        let sources = dir_sources(archive_dir.path());
        let filler = filler(&spool, &sources, 3);
        std::thread::scope(|s| {
            let worker = s.spawn(|| run(&filler, all[0]));
            // PostgreSQL takes 6, 7, ... in order, each once the worker spooled it; the spool
            // never holds more than the window past the newest one taken.
            for (i, n) in all.iter().enumerate().skip(1) {
                let path = spool.path(n);
                let deadline = Instant::now() + Duration::from_secs(30);
                while !path.exists() {
                    assert!(Instant::now() < deadline, "{n} never spooled");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let held = spooled(&spool);
                assert!(held.len() <= 3, "{held:?} after {}", all[i - 1]);
                let taken = std::fs::read(&path).unwrap();
                assert_eq!(taken, walcheck::fake_switch_segment(n, size(), 7));
                std::fs::remove_file(&path).unwrap();
            }
            // 25 is not archived: the worker ends without waiting for it.
            worker.join().unwrap().unwrap();
        });
        assert!(spooled(&spool).is_empty());
    }

    #[test]
    fn the_pool_ends_when_nothing_is_taken() {
        let (_d, spool) = new_spool();
        let archive_dir = tempfile::tempdir().unwrap();
        let all = names(5, 20);
        archive(archive_dir.path(), &all);
        let sources = dir_sources(archive_dir.path());
        let filler = filler(&spool, &sources, 4);
        let t = Instant::now();
        run(&filler, all[0]).unwrap();
        assert!(t.elapsed() >= WORKER_IDLE);
        // The window after 5, and nothing more.
        let want: Vec<String> = all[1..5].iter().map(ToString::to_string).collect();
        assert_eq!(spooled(&spool), want);
    }
}
