//! The replay cache: which request (`enc`, unique per sealing) was seen under
//! which job id, until the request can no longer be opened anyway.
//!
//! - **Replay vs redelivery.** The same `enc` under another job id is a
//!   replay (the same sealed request resubmitted as a new job); under the same
//!   job id it is a redelivery (the stream sent the job again) and passes.
//! - **Lifetime.** An entry lives until the request's `exp` plus the skew the
//!   expiry check allows ([`super::SKEW_SECS`]): after that the expiry check,
//!   which runs before this one, refuses the request whatever the cache says,
//!   so forgetting it is safe. Expired entries are dropped as new ones come.
//! - **Bound.** At most `capacity` live entries. When it is full of entries
//!   that have not expired, a new request is *refused* (`seal_replay`, saying
//!   the cache is full), never admitted unchecked: evicting a live entry, even
//!   the soonest-expiring one, would let that request be replayed until its
//!   `exp`. Only requests with a valid signature of a pinned signer reach the
//!   cache (the checks before it), and resubmitting one adds nothing, so a
//!   stolen submitter token alone cannot fill it; size it for the number of
//!   sealed jobs whose `exp` + 60 s lies ahead at the busiest time (an entry
//!   costs about 100 bytes; the default holds 100,000).
//! - **Clock.** Expiry uses the wall-clock `now` the caller passes (the same
//!   as for the expiry check). A clock stepped backwards by more than the
//!   skew could revive a request whose entry was already dropped.
//! - **Restarts.** The cache lives in memory: after a restart of the agent, a
//!   request seen before can be replayed until its `exp`. Keep job timeouts
//!   short, or keep the agent's restarts rare.
//! - **Threads.** One mutex; check and record happen under it, so of two
//!   concurrent deliveries of one request under two job ids exactly one wins.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// How many live entries a cache holds unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Why the cache refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before under another job.
    Replayed { first_job: i64 },
    /// Full of live entries: this request could not be recorded, so it is
    /// refused rather than opened unchecked.
    Full { capacity: usize },
}

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `enc` → (the first job id it came with, kept until this Unix second).
    seen: HashMap<[u8; 32], (i64, u64)>,
    /// The same entries by the second they expire, soonest first.
    by_expiry: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are held (live or not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check `enc` for `job` and record it, kept until `until` (Unix
    /// seconds): `Ok` for a new request or a redelivery of the same job.
    pub fn check_and_record(
        &self,
        enc: &[u8; 32],
        job: i64,
        until: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let mut inner = self.lock();
        inner.drop_expired(now);
        if let Some(&(first_job, _)) = inner.seen.get(enc) {
            return if first_job == job {
                Ok(())
            } else {
                Err(ReplayError::Replayed { first_job })
            };
        }
        if inner.seen.len() >= self.capacity {
            return Err(ReplayError::Full {
                capacity: self.capacity,
            });
        }
        inner.seen.insert(*enc, (job, until));
        inner.by_expiry.push(Reverse((until, *enc)));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that admits a replay (an entry is inserted into both or
        // neither before anything that can panic), so carry on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for ReplayCache {
    fn default() -> ReplayCache {
        ReplayCache::new(DEFAULT_CAPACITY)
    }
}

impl Inner {
    /// Drop the entries kept until before `now`.
    fn drop_expired(&mut self, now: u64) {
        while let Some(Reverse((until, enc))) = self.by_expiry.peek().copied() {
            if until >= now {
                break;
            }
            self.by_expiry.pop();
            self.seen.remove(&enc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn redelivery_passes_and_another_job_is_a_replay() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_record(&enc(1), 7, 1000, 900), Ok(()));
        assert_eq!(cache.check_and_record(&enc(1), 7, 1000, 901), Ok(()));
        assert_eq!(
            cache.check_and_record(&enc(1), 8, 1000, 902),
            Err(ReplayError::Replayed { first_job: 7 })
        );
        // The refused job did not take the entry over.
        assert_eq!(cache.check_and_record(&enc(1), 7, 1000, 903), Ok(()));
        assert_eq!(cache.check_and_record(&enc(2), 8, 1000, 903), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn entries_live_until_their_second_and_no_longer() {
        let cache = ReplayCache::new(10);
        cache.check_and_record(&enc(1), 1, 1000, 900).unwrap();
        // At `until` itself the entry still holds.
        assert_eq!(
            cache.check_and_record(&enc(1), 2, 1000, 1000),
            Err(ReplayError::Replayed { first_job: 1 })
        );
        // One second later it is gone (the expiry check refuses the request
        // by then).
        assert_eq!(cache.check_and_record(&enc(1), 2, 1000, 1001), Ok(()));
    }

    #[test]
    fn full_of_live_entries_refuses_and_never_forgets_one() {
        let cache = ReplayCache::new(3);
        for n in 1..=3 {
            cache
                .check_and_record(&enc(n), n.into(), 1000 + u64::from(n), 900)
                .unwrap();
        }
        assert_eq!(
            cache.check_and_record(&enc(4), 4, 2000, 900),
            Err(ReplayError::Full { capacity: 3 })
        );
        // Every live entry still catches its replay, the soonest-expiring too.
        for n in 1..=3 {
            assert_eq!(
                cache.check_and_record(&enc(n), 99, 2000, 900),
                Err(ReplayError::Replayed {
                    first_job: n.into()
                })
            );
        }
        // Once the first expires, there is room again.
        assert_eq!(cache.check_and_record(&enc(4), 4, 2000, 1002), Ok(()));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn concurrent_deliveries_of_one_request_let_exactly_one_job_through() {
        let cache = std::sync::Arc::new(ReplayCache::new(100));
        let winners: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|job| {
                    let cache = cache.clone();
                    scope.spawn(move || cache.check_and_record(&enc(9), job, 1000, 900).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1);
    }
}
