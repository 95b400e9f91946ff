//! Debouncing for watch mode: which changes of one item are waiting to be synced, and when they
//! are due. A burst of changes is synced once the item has been quiet for `quiet`, and at least
//! every `max_delay` while changes keep coming, so a file written continuously is still carried.
//!
//! No clock here: the caller reads it and passes every instant in, so the timing is a function of
//! its arguments and the tests need no sleeping.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The changes of one watched item not yet synced (the pending burst), with when the first and
/// the last of them were seen. `T` is what changed (a relative path, for watch mode); a change
/// seen twice in one burst is synced once.
#[derive(Debug, Clone)]
pub struct Debounce<T> {
    quiet: Duration,
    /// At least `quiet`.
    max_delay: Duration,
    pending: BTreeSet<T>,
    /// When the first and the last pending change were seen; `None` exactly when nothing is
    /// pending.
    seen: Option<(Instant, Instant)>,
}

impl<T: Ord> Debounce<T> {
    /// Nothing pending. A `max_delay` shorter than `quiet` is taken as `quiet` (as the command
    /// line's settings already do): a burst is never cut before it could have been quiet.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Debounce { quiet, max_delay: max_delay.max(quiet), pending: BTreeSet::new(), seen: None }
    }

    /// `change` was seen at `now`: it joins the pending burst, and the quiet period starts again.
    pub fn touch(&mut self, now: Instant, change: T) {
        let first = self.seen.map_or(now, |(first, _)| first);
        self.seen = Some((first, now));
        self.pending.insert(change);
    }

    /// When the pending burst is due: `quiet` after its last change or `max_delay` after its
    /// first, whichever comes sooner. `None` when nothing is pending (or both bounds lie beyond
    /// what an `Instant` can hold, so it is never due). The caller sleeps until then at most.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = self.seen?;
        let bounds = [last.checked_add(self.quiet), first.checked_add(self.max_delay)];
        bounds.into_iter().flatten().min()
    }

    /// The pending burst, if it is due at `now` (its deadline is `now` or earlier); it is taken,
    /// so nothing is pending afterwards. `None`, and nothing changes, when it is not due yet.
    pub fn take(&mut self, now: Instant) -> Option<BTreeSet<T>> {
        if self.deadline()? > now {
            return None;
        }
        self.seen = None;
        Some(std::mem::take(&mut self.pending))
    }

    /// Forgets the pending burst without syncing it: a full run is about to cover it.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// quiet 200 ms, max_delay 2 s, the defaults of `pairsync watch`.
    fn default_timing() -> Debounce<u32> {
        Debounce::new(ms(200), ms(2000))
    }

    #[test]
    fn when_a_burst_is_due() {
        struct Case {
            name: &'static str,
            quiet_ms: u64,
            max_delay_ms: u64,
            /// Milliseconds after the base instant at which a change is seen.
            touches: Vec<u64>,
            /// The expected deadline, in milliseconds after the base.
            deadline: Option<u64>,
        }
        // A steady stream: a change every 100 ms, never quiet for 200 ms, from 0 to 2500 ms.
        let stream: Vec<u64> = (0..=25).map(|i| i * 100).collect();
        let cases = [
            Case { name: "nothing touched", quiet_ms: 200, max_delay_ms: 2000, touches: vec![], deadline: None },
            Case {
                name: "one change: quiet after it",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: vec![0],
                deadline: Some(200),
            },
            Case {
                name: "a short burst: quiet after its last change",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: vec![0, 50, 150, 300],
                deadline: Some(500),
            },
            Case {
                name: "a steady stream: max_delay after its first change, though never quiet",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: stream.iter().copied().take_while(|&t| t < 2000).collect(),
                deadline: Some(2000),
            },
            Case {
                name: "a change just before max_delay: the max-delay bound is the sooner",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: vec![0, 1900],
                deadline: Some(2000),
            },
            Case {
                name: "a change before max_delay - quiet: the quiet bound is the sooner",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: vec![0, 1799],
                deadline: Some(1999),
            },
            Case {
                name: "both bounds fall together",
                quiet_ms: 200,
                max_delay_ms: 2000,
                touches: vec![0, 1800],
                deadline: Some(2000),
            },
            Case {
                name: "max_delay shorter than quiet is taken as quiet",
                quiet_ms: 500,
                max_delay_ms: 100,
                touches: vec![0, 300],
                deadline: Some(500),
            },
            Case {
                name: "max_delay equal to quiet: max_delay after the first change",
                quiet_ms: 200,
                max_delay_ms: 200,
                touches: vec![0, 100],
                deadline: Some(200),
            },
            Case {
                name: "quiet zero: due at the last change",
                quiet_ms: 0,
                max_delay_ms: 2000,
                touches: vec![0, 100],
                deadline: Some(100),
            },
        ];
        let base = Instant::now();
        let at = |offset: u64| base + ms(offset);
        for case in cases {
            let name = case.name;
            let mut debounce = Debounce::new(ms(case.quiet_ms), ms(case.max_delay_ms));
            for (i, &t) in case.touches.iter().enumerate() {
                debounce.touch(at(t), i);
            }
            let want = case.deadline.map(at);
            assert_eq!(debounce.deadline(), want, "{name}: deadline");
            let Some(deadline) = want else {
                // Nothing pending is never due, however long the wait.
                assert_eq!(debounce.take(at(1_000_000_000)), None, "{name}: due with nothing pending");
                continue;
            };
            // Due exactly at the deadline, not a nanosecond before; taking it takes every change.
            assert_eq!(debounce.take(deadline - Duration::from_nanos(1)), None, "{name}: due before its deadline");
            assert_eq!(debounce.deadline(), want, "{name}: an early take changed the deadline");
            let taken = debounce.take(deadline);
            assert_eq!(taken, Some((0..case.touches.len()).collect()), "{name}: the burst at its deadline");
            assert_eq!(debounce.deadline(), None, "{name}: deadline after the take");
            assert_eq!(debounce.take(at(1_000_000_000)), None, "{name}: due again after the take");
        }
    }

    #[test]
    fn a_steady_stream_is_synced_every_max_delay() {
        // Walk the clock in 100 ms steps as watch mode would: at each step the burst is checked,
        // then a change is seen. Never quiet, so every batch comes max_delay after its first change.
        let base = Instant::now();
        let mut debounce = default_timing();
        let mut batches = Vec::new();
        for step in 0..=60u32 {
            let now = base + ms(u64::from(step) * 100);
            if let Some(batch) = debounce.take(now) {
                batches.push((step, batch.len()));
            }
            debounce.touch(now, step);
        }
        assert_eq!(batches, [(20, 20), (40, 20), (60, 20)]);
    }

    #[test]
    fn a_take_resets_the_burst() {
        let base = Instant::now();
        let mut debounce = default_timing();
        debounce.touch(base, 1);
        debounce.touch(base + ms(100), 2);
        assert_eq!(debounce.take(base + ms(300)), Some(BTreeSet::from([1, 2])));
        // The next change starts a new burst: its first change is this one, not the old first.
        debounce.touch(base + ms(1900), 3);
        assert_eq!(debounce.deadline(), Some(base + ms(2100)));
        assert_eq!(debounce.take(base + ms(2000)), None, "the old burst's max_delay does not apply");
        assert_eq!(debounce.take(base + ms(2100)), Some(BTreeSet::from([3])));
    }

    #[test]
    fn a_change_seen_twice_is_synced_once() {
        let base = Instant::now();
        let mut debounce = default_timing();
        debounce.touch(base, 7);
        debounce.touch(base + ms(50), 7);
        assert_eq!(debounce.deadline(), Some(base + ms(250)), "the repeat still restarts the quiet period");
        assert_eq!(debounce.take(base + ms(250)), Some(BTreeSet::from([7])));
    }

    #[test]
    fn a_change_exactly_at_the_deadline() {
        let base = Instant::now();
        // Seen at the quiet bound, before the check: the quiet period starts again.
        let mut debounce = default_timing();
        debounce.touch(base, 1);
        debounce.touch(base + ms(200), 2);
        assert_eq!(debounce.take(base + ms(200)), None);
        assert_eq!(debounce.take(base + ms(400)), Some(BTreeSet::from([1, 2])));
        // Seen at the max-delay bound, before the check: due all the same, and it goes along.
        let mut debounce = default_timing();
        for t in (0..2000).step_by(100) {
            debounce.touch(base + ms(t), 0);
        }
        debounce.touch(base + ms(2000), 1);
        assert_eq!(debounce.take(base + ms(2000)), Some(BTreeSet::from([0, 1])));
    }

    #[test]
    fn clear_forgets_the_burst() {
        let base = Instant::now();
        let mut debounce = default_timing();
        debounce.touch(base, 1);
        debounce.touch(base + ms(1000), 2);
        debounce.clear();
        assert_eq!(debounce.deadline(), None);
        assert_eq!(debounce.take(base + ms(5000)), None);
        debounce.touch(base + ms(1900), 3);
        assert_eq!(debounce.deadline(), Some(base + ms(2100)), "a new burst after a clear");
    }

    #[test]
    fn a_bound_beyond_what_an_instant_holds_is_never_reached() {
        let base = Instant::now();
        let mut debounce = Debounce::new(ms(200), Duration::MAX);
        debounce.touch(base, 1);
        assert_eq!(debounce.deadline(), Some(base + ms(200)), "the quiet bound alone");
        let mut debounce = Debounce::new(Duration::MAX, Duration::MAX);
        debounce.touch(base, 1);
        assert_eq!(debounce.deadline(), None);
        assert_eq!(debounce.take(base + ms(1_000_000_000)), None);
    }
}
