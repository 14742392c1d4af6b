//! Accepting while the process has no descriptor left (EMFILE, ENFILE): which errors
//! mean it, how many idle upstream connections to close for it, and one log line when
//! such a shortage begins and one when it is over, however many accepts fail meanwhile.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::limits::descriptor_limit;

/// Idle upstream connections an accept loop closes each time it finds the process out
/// of descriptors, before it tries again.
pub(crate) const TRIM_BATCH: usize = 16;
/// How long accepting must have succeeded since the last failure for a shortage of
/// descriptors to count as over.
const SHORTAGE_QUIET: Duration = Duration::from_secs(1);

/// Whether `error` says the process (EMFILE) or the system (ENFILE) has no descriptor
/// left.
pub(crate) fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE)
    )
}

/// The descriptor table is the process's, so a shortage is too: every accept loop of
/// every worker reports into this one, which logs the shortage once when it begins and
/// once when it is over.
static SHORTAGE: Shortage = Shortage {
    open: AtomicBool::new(false),
    episode: Mutex::new(Episode::new()),
};

struct Shortage {
    /// Whether an episode is open: the only thing a successful accept reads.
    open: AtomicBool,
    episode: Mutex<Episode>,
}

/// An accept failed for want of descriptors, after `closed` idle upstream connections
/// were closed; `paused` when accepting now waits (there was nothing to close).
pub(crate) fn accept_failed(error: &io::Error, closed: usize, paused: bool) {
    let began = {
        let mut episode = SHORTAGE.episode.lock().unwrap_or_else(|e| e.into_inner());
        let began = episode.failed(Instant::now(), closed, paused);
        SHORTAGE.open.store(true, Ordering::Relaxed);
        began
    };
    if began {
        tracing::warn!(
            limit = %descriptor_limit(),
            "accept failed: {error}; closing idle upstream connections, then pausing accepts \
             until descriptors are free (logged once until accepting recovers)"
        );
    }
}

/// An accept succeeded.
pub(crate) fn accepted() {
    if !SHORTAGE.open.load(Ordering::Relaxed) {
        return;
    }
    let over = {
        let mut episode = SHORTAGE.episode.lock().unwrap_or_else(|e| e.into_inner());
        let over = episode.accepted(Instant::now());
        SHORTAGE.open.store(episode.is_open(), Ordering::Relaxed);
        over
    };
    if let Some(over) = over {
        tracing::info!(
            lasted_ms = u64::try_from(over.lasted.as_millis()).unwrap_or(u64::MAX),
            failed_accepts = over.failed_accepts,
            closed_idle_upstream = over.closed_idle,
            pauses = over.pauses,
            "accepting again after running out of file descriptors"
        );
    }
}

/// One shortage of descriptors, from the first failed accept until accepts have
/// succeeded for [`SHORTAGE_QUIET`] after the last failure.
#[derive(Debug, PartialEq, Eq)]
struct Episode {
    /// When the open episode began; `None` when there is none.
    began: Option<Instant>,
    last_failure: Option<Instant>,
    failed_accepts: u64,
    closed_idle: u64,
    pauses: u64,
}

/// A finished [`Episode`], for its closing log line.
#[derive(Debug, PartialEq, Eq)]
struct Over {
    lasted: Duration,
    failed_accepts: u64,
    closed_idle: u64,
    pauses: u64,
}

impl Episode {
    const fn new() -> Self {
        Episode {
            began: None,
            last_failure: None,
            failed_accepts: 0,
            closed_idle: 0,
            pauses: 0,
        }
    }

    fn is_open(&self) -> bool {
        self.began.is_some()
    }

    /// Counts a failure; true when it began an episode.
    fn failed(&mut self, now: Instant, closed: usize, paused: bool) -> bool {
        let began = !self.is_open();
        if began {
            *self = Episode::new();
            self.began = Some(now);
        }
        self.last_failure = Some(now);
        self.failed_accepts += 1;
        self.closed_idle += closed as u64;
        self.pauses += u64::from(paused);
        began
    }

    /// Counts a success; the finished episode when this one ends it.
    fn accepted(&mut self, now: Instant) -> Option<Over> {
        let began = self.began?;
        let last_failure = self.last_failure.unwrap_or(began);
        if now.saturating_duration_since(last_failure) < SHORTAGE_QUIET {
            return None;
        }
        let over = Over {
            lasted: last_failure.saturating_duration_since(began),
            failed_accepts: self.failed_accepts,
            closed_idle: self.closed_idle,
            pauses: self.pauses,
        };
        *self = Episode::new();
        Some(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_emfile_and_enfile_mean_out_of_descriptors() {
        let os = |errno: Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert!(out_of_descriptors(&os(Errno::MFILE)));
        assert!(out_of_descriptors(&os(Errno::NFILE)));
        assert!(!out_of_descriptors(&os(Errno::CONNABORTED)));
        assert!(!out_of_descriptors(&os(Errno::NOBUFS)));
        assert!(!out_of_descriptors(&io::Error::other(
            "Too many open files"
        )));
    }

    #[test]
    fn a_shortage_is_one_episode_until_accepts_succeed_for_a_quiet_second() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut episode = Episode::new();
        assert_eq!(episode.accepted(at(0)), None, "no episode, nothing to end");
        assert!(
            episode.failed(at(0), 16, false),
            "the first failure begins it"
        );
        assert!(!episode.failed(at(10), 4, false));
        assert!(!episode.failed(at(20), 0, true));
        // Accepts right after a failure (descriptors just freed) do not end it.
        assert_eq!(episode.accepted(at(30)), None);
        assert!(!episode.failed(at(500), 0, true), "still the same episode");
        assert_eq!(episode.accepted(at(1_499)), None);
        assert_eq!(
            episode.accepted(at(1_500)),
            Some(Over {
                lasted: Duration::from_millis(500),
                failed_accepts: 4,
                closed_idle: 20,
                pauses: 2,
            })
        );
        assert!(!episode.is_open());
        assert_eq!(episode.accepted(at(3_000)), None, "ended once");
        assert!(
            episode.failed(at(4_000), 0, true),
            "a new shortage begins anew"
        );
        assert_eq!(episode.failed_accepts, 1);
    }
}
