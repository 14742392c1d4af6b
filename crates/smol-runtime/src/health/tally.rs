//! The up/down rule of one server: `fails` failed checks in a row take it down,
//! `passes` passed checks in a row bring it back up; a result that agrees with the
//! current state resets the count. Nothing but counting: deterministic and tested here.

/// A server's state and the run of results against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    down: bool,
    /// Results in a row that disagree with `down` (failures while up, passes while down).
    streak: u32,
}

/// A change of state, returned once when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `fails` failures in a row.
    WentDown,
    /// `passes` passes in a row.
    CameUp,
}

impl Tally {
    /// Whether the server is down.
    pub(crate) fn is_down(&self) -> bool {
        self.down
    }

    /// Counts one result. A threshold of 0 counts as 1: one result always suffices.
    pub(crate) fn record(&mut self, passed: bool, fails: u32, passes: u32) -> Option<Change> {
        if passed != self.down {
            // Agrees with the state: an interrupted run starts over.
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let needed = if self.down { passes } else { fails };
        if self.streak < needed.max(1) {
            return None;
        }
        self.down = !self.down;
        self.streak = 0;
        Some(if self.down {
            Change::WentDown
        } else {
            Change::CameUp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` ("p" pass, "f" fail) and lists the changes with their positions.
    fn run(tally: &mut Tally, results: &str, fails: u32, passes: u32) -> Vec<(usize, Change)> {
        results
            .chars()
            .enumerate()
            .filter_map(|(i, c)| tally.record(c == 'p', fails, passes).map(|ch| (i, ch)))
            .collect()
    }

    #[test]
    fn a_server_starts_up_and_goes_down_after_fails_failures_in_a_row() {
        let mut tally = Tally::default();
        assert!(!tally.is_down());
        assert_eq!(run(&mut tally, "ff", 3, 2), []);
        assert!(!tally.is_down(), "two failures of three");
        assert_eq!(run(&mut tally, "f", 3, 2), [(0, Change::WentDown)]);
        assert!(tally.is_down());
    }

    #[test]
    fn a_pass_in_between_restarts_the_count_of_failures() {
        let mut tally = Tally::default();
        assert_eq!(run(&mut tally, "ffpffpff", 3, 2), []);
        assert!(!tally.is_down());
        assert_eq!(run(&mut tally, "f", 3, 2), [(0, Change::WentDown)]);
    }

    #[test]
    fn a_down_server_comes_back_after_passes_passes_in_a_row() {
        let mut tally = Tally::default();
        run(&mut tally, "fff", 3, 2);
        assert_eq!(run(&mut tally, "pfpfp", 3, 2), [], "never two in a row");
        assert!(tally.is_down());
        assert_eq!(run(&mut tally, "p", 3, 2), [(0, Change::CameUp)]);
        assert!(!tally.is_down());
        // Up again, it needs all `fails` again: the failures before do not count.
        assert_eq!(run(&mut tally, "ffpfff", 3, 2), [(5, Change::WentDown)]);
    }

    #[test]
    fn each_change_is_reported_once() {
        let mut tally = Tally::default();
        let changes = run(&mut tally, "ffffffpppppfff", 2, 3);
        assert_eq!(
            changes,
            [
                (1, Change::WentDown),
                (8, Change::CameUp),
                (12, Change::WentDown)
            ]
        );
    }

    #[test]
    fn thresholds_of_one_follow_every_result_and_zero_counts_as_one() {
        for threshold in [0, 1] {
            let mut tally = Tally::default();
            let changes = run(&mut tally, "fpfp", threshold, threshold);
            assert_eq!(
                changes,
                [
                    (0, Change::WentDown),
                    (1, Change::CameUp),
                    (2, Change::WentDown),
                    (3, Change::CameUp)
                ]
            );
        }
    }

    #[test]
    fn every_sequence_flips_exactly_when_the_run_reaches_its_threshold() {
        // Every sequence of 10 results against a model that counts runs directly.
        for bits in 0u32..1 << 10 {
            for (fails, passes) in [(1, 1), (2, 3), (3, 2)] {
                let mut tally = Tally::default();
                let (mut down, mut run_len) = (false, 0);
                for i in 0..10 {
                    let passed = bits >> i & 1 == 1;
                    let change = tally.record(passed, fails, passes);
                    run_len = if passed == down { run_len + 1 } else { 0 };
                    let flip = run_len == if down { passes } else { fails };
                    if flip {
                        down = !down;
                        run_len = 0;
                    }
                    assert_eq!(change.is_some(), flip, "bits {bits:b} at {i}");
                    assert_eq!(tally.is_down(), down);
                }
            }
        }
    }
}
