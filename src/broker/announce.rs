//! Announcing what changed, once the database holds it: a new job to the
//! stream, an ended job to its waiters here and to the other instances (and
//! SQL clients, which may LISTEN on `backchannel_done`). How each travels is
//! decided once: a new job's by the hub before its insert
//! ([`NewJobWake`]), an end's by the statement that ended it ([`DoneNotice`]).

use super::Broker;
use crate::job::{Job, NewJobWake};

/// How the other instances learn that a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DoneNotice {
    /// The statement that ended it sent `backchannel_done` in its own
    /// commit (answers and cancels).
    SentInCommit,
    /// It sent none (an expiry found on a read, an undeliverable job): the
    /// notifier sends it, coalesced with others.
    ByNotifier,
}

impl Broker {
    /// A job this instance ended: count it, hand it to its waiters here (no
    /// read back), and have `backchannel_done` sent unless its commit did.
    pub(super) fn announce_end(&self, job: &Job, notice: DoneNotice) {
        self.metrics.jobs.ended(job);
        self.hub.wake_job(job.id, Some(job));
        if notice == DoneNotice::ByNotifier {
            self.notifier.done(job.id);
        }
    }

    /// A job was created with `wake`, as the hub decided before its insert:
    /// a local stream is woken now (and if it left meanwhile, one coalesced
    /// NOTIFY reaches wherever it went); an insert that notified in its
    /// commit, or poll mode, needs nothing more.
    pub(super) fn announce_new(&self, wake: NewJobWake) {
        if wake == NewJobWake::Local && !self.hub.wake_stream() {
            self.notifier.new_job();
        }
    }
}
