//! Announcing what changed, once the database holds it: a new job to the
//! stream, an ended job to its waiters here and to the other instances (and
//! SQL clients, which may LISTEN on `backchannel_done`). How each travels is
//! decided once: a new job's by the hub before its insert
//! ([`NewJobWake`]), an end's by the statement that ended it ([`DoneNotice`]).

use super::{Broker, BrokerError};
use crate::job::{Job, NewJobWake};
use crate::store::{Ended, StoreError};

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
    /// a job the insert claimed for the local stream is handed to it; a local
    /// stream is woken now (and if it left meanwhile, one coalesced NOTIFY
    /// reaches wherever it went); an insert that notified in its commit, or
    /// poll mode, needs nothing more. An insert that could not notify
    /// (PostgreSQL's notification queue full) has the notifier send it.
    pub(super) fn announce_new(&self, wake: NewJobWake, notified: bool, job: &Job) {
        let deferred = wake == NewJobWake::InCommit && !notified;
        if deferred {
            self.metrics.wake.notifications_deferred.inc();
        }
        let channel = job.channel;
        let local = match wake {
            NewJobWake::Claimed(stream) => {
                // The stream it was claimed for ended meanwhile: the next
                // stream claims it again (here or elsewhere), woken so.
                !self.hub.hand(channel, stream, job.event())
            }
            NewJobWake::Local => true,
            NewJobWake::InCommit | NewJobWake::Polled => false,
        };
        if (local && !self.hub.wake_stream(channel)) || deferred {
            self.notifier.new_job(channel);
        }
    }

    /// The outcome of this instance's answer or cancel: a job it ended is
    /// announced (its `backchannel_done` by the notifier when the commit
    /// could not send it). A job it ended but cannot read back is announced
    /// too (its waiters read it themselves), and its request alone fails.
    pub(super) fn ended(
        &self,
        outcome: Result<Option<Ended>, StoreError>,
    ) -> Result<Option<Job>, BrokerError> {
        match outcome {
            Ok(Some(Ended { job, notified })) => {
                let notice = if notified {
                    DoneNotice::SentInCommit
                } else {
                    self.metrics.wake.notifications_deferred.inc();
                    DoneNotice::ByNotifier
                };
                self.announce_end(&job, notice);
                Ok(Some(job))
            }
            Ok(None) => Ok(None),
            Err(StoreError::EndedUnreadable { id, cause }) => {
                self.hub.wake_job(id, None);
                self.notifier.done(id);
                Err(StoreError::EndedUnreadable { id, cause }.into())
            }
            Err(error) => Err(error.into()),
        }
    }
}
