//! The in-process wake-up hub: who is waiting for which job, and the local
//! streams (one per channel at most). Fed by the LISTEN connection and by
//! this process's own answers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::WakeMode;
use crate::job::{ChannelId, Job, JobEvent, NewJobWake};

/// Jobs handed to the local stream and not yet taken by it: beyond this, new
/// jobs are stored pending and the stream claims them (a slow listener never
/// grows this process's memory).
const HANDED_MAX: usize = 256;

/// The stream held in this process: its wake-up, its number, and the jobs
/// handed to it by inserts that claimed them for it.
struct LocalStream {
    seq: u64,
    notify: Arc<Notify>,
    id: i64,
    handed: Arc<Mutex<VecDeque<JobEvent>>>,
    /// Set by a wake that asks for a claim (jobs stored pending); a handed
    /// job alone wakes the stream without one.
    claim: Arc<AtomicBool>,
}

impl LocalStream {
    fn wake(&self) {
        self.claim.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// One job's waiters share a slot: a notifier and, for answers given in this
/// process, the terminal job itself (so the waiter need not read it back).
#[derive(Default)]
pub struct Slot {
    pub notify: Notify,
    latest: Mutex<Option<Job>>,
}

impl Slot {
    /// The terminal job handed over by a local wake, if any.
    pub fn latest(&self) -> Option<Job> {
        self.latest.lock().expect("slot lock").clone()
    }

    /// Whether the waiters were already handed the job's end: terminal,
    /// never left again, so nothing heard later can change it.
    fn holds_end(&self) -> bool {
        self.latest
            .lock()
            .expect("slot lock")
            .as_ref()
            .is_some_and(Job::is_terminal)
    }
}

/// Wake-ups remembered, numbered, so that a request that registers only after
/// creating its job can tell whether that job was woken in between.
const HISTORY: usize = 4096;
/// A history entry that stands for every job: the LISTEN connection went down,
/// so notifications may have been lost.
const EVERY_JOB: i64 = i64::MIN;

#[derive(Default)]
struct History {
    next: u64,
    recent: VecDeque<(u64, i64)>,
}

#[derive(Default)]
pub struct Hub {
    slots: Mutex<HashMap<i64, (Arc<Slot>, usize)>>,
    /// Jobs this process is ending now (an answer's or a cancel's statement
    /// sent, its outcome not yet handed to the waiters): how many requests
    /// end each, and whether its end was heard meanwhile ([`Ending`]).
    ending: Mutex<HashMap<i64, (usize, bool)>>,
    history: Mutex<History>,
    /// Signalled after every LISTEN (re)connect: re-check the waiters against
    /// the table, since notifications sent in between are lost.
    reconnected: Notify,
    /// Signalled when the stream's holder may have changed (a
    /// `backchannel_holder` notification, a LISTEN reconnect).
    holder_moved: Notify,
    /// The streams held in this process, by channel.
    streams: Mutex<HashMap<ChannelId, LocalStream>>,
    stream_seq: AtomicU64,
    listening: AtomicBool,
    waiting: AtomicUsize,
    /// Requests waiting here per channel, for channels with a limit of their own.
    waiting_by_channel: Mutex<HashMap<ChannelId, usize>>,
    max_waiting: usize,
    /// Poll mode: the stream finds new jobs by polling; nothing wakes it.
    polled: bool,
}

impl Hub {
    /// A hub that lets at most `max_waiting` requests wait at once; `wake`
    /// says whether the stream is woken (notify) or polls.
    pub fn new(max_waiting: usize, wake: WakeMode) -> Arc<Hub> {
        Arc::new(Hub {
            max_waiting,
            polled: wake == WakeMode::Poll,
            ..Hub::default()
        })
    }

    /// A place among the waiting requests, or `None` when all are taken.
    /// Taken before anything is stored, so a refused request changes nothing.
    /// With `channel` (its id and its own limit), also one of that channel's
    /// places here.
    pub fn reserve(self: &Arc<Self>, channel: Option<(ChannelId, usize)>) -> Option<WaitPermit> {
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return None;
        }
        let mut permit = WaitPermit {
            hub: self.clone(),
            channel: None,
        };
        if let Some((id, limit)) = channel {
            let mut by_channel = self.waiting_by_channel.lock().expect("hub lock");
            let waiting = by_channel.entry(id).or_insert(0);
            if *waiting >= limit {
                return None;
            }
            *waiting += 1;
            permit.channel = Some(id);
        }
        Some(permit)
    }

    /// Register interest in job `id`. Register before the last read of the
    /// row: a wake between the read and the wait is then not lost.
    pub fn register(self: &Arc<Self>, id: i64) -> Waiter {
        let mut slots = self.slots.lock().expect("hub lock");
        let entry = slots
            .entry(id)
            .or_insert_with(|| (Arc::new(Slot::default()), 0));
        entry.1 += 1;
        Waiter {
            hub: self.clone(),
            id,
            slot: entry.0.clone(),
        }
    }

    /// Requests waiting now in this process.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The ids this process waits on.
    pub fn waited_ids(&self) -> Vec<i64> {
        self.slots
            .lock()
            .expect("hub lock")
            .keys()
            .copied()
            .collect()
    }

    /// A mark in the wake-up history: take it before creating a job.
    pub fn mark(&self) -> u64 {
        self.history.lock().expect("hub lock").next
    }

    /// Whether job `id` may have been woken since `mark` (true when the
    /// history no longer reaches back that far, or LISTEN is or was down since).
    pub fn woken_since(&self, mark: u64, id: i64) -> bool {
        if !self.is_listening() {
            return true;
        }
        let history = self.history.lock().expect("hub lock");
        if history
            .recent
            .front()
            .is_some_and(|&(oldest, _)| oldest > mark)
        {
            return true;
        }
        history
            .recent
            .iter()
            .rev()
            .take_while(|&&(seq, _)| seq >= mark)
            .any(|&(_, woken)| woken == id || woken == EVERY_JOB)
    }

    fn remember(&self, id: i64) {
        let mut history = self.history.lock().expect("hub lock");
        let seq = history.next;
        history.next += 1;
        history.recent.push_back((seq, id));
        if history.recent.len() > HISTORY {
            history.recent.pop_front();
        }
    }

    /// Wake the waiters of job `id`; `job` is the terminal job when known.
    pub fn wake_job(&self, id: i64, job: Option<&Job>) {
        self.remember(id);
        if let Some(slot) = self.slot_of(id) {
            if let Some(job) = job {
                *slot.latest.lock().expect("slot lock") = Some(job.clone());
            }
            slot.notify.notify_waiters();
        }
    }

    /// Job `id` ended (its notification arrived: sent by another process,
    /// or by this one's own commit). True when someone here waits for it and
    /// was not yet handed its end: the caller then has it read back and
    /// handed to its waiters ([`crate::broker`]'s `ended_elsewhere` step
    /// reads every such job in one statement, instead of each waiter reading
    /// its own row).
    ///
    /// A job whose waiters already hold its end (this process ended it, or
    /// read it back after an earlier notification) costs nothing more: no
    /// read, no second wake, no history entry (the wake that handed it over
    /// was remembered after its end committed, which is all a mark needs).
    ///
    /// A job this process is [`ending`](Hub::ending) is left to the request
    /// that ends it: its commit's own notification usually arrives before
    /// its statement returns.
    pub fn heard_ended(&self, id: i64) -> bool {
        if let Some((_, heard)) = self.ending.lock().expect("hub lock").get_mut(&id) {
            *heard = true;
            return false;
        }
        let slot = self.slot_of(id);
        if slot.as_ref().is_some_and(|slot| slot.holds_end()) {
            return false;
        }
        self.remember(id);
        slot.is_some()
    }

    /// Whether someone here still waits for job `id` without having been
    /// handed its end: what a read back of its row is for.
    pub fn awaits_end(&self, id: i64) -> bool {
        self.slot_of(id).is_some_and(|slot| !slot.holds_end())
    }

    fn slot_of(&self, id: i64) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .expect("hub lock")
            .get(&id)
            .map(|(slot, _)| slot.clone())
    }

    /// This process is about to end job `id` (an answer, a cancel): until
    /// the guard is dropped, after the outcome was handed to the waiters
    /// ([`wake_job`](Hub::wake_job)), an end heard for it is held back.
    /// Then, if one was heard and the waiters still lack the end (another
    /// process ended the job first, or the statement failed), they are woken
    /// to read their rows.
    pub fn ending(self: &Arc<Self>, id: i64) -> Ending {
        self.ending
            .lock()
            .expect("hub lock")
            .entry(id)
            .or_insert((0, false))
            .0 += 1;
        Ending {
            hub: self.clone(),
            id,
        }
    }

    /// Resolves after LISTEN (re)connected: notifications may have been lost.
    pub async fn listen_reconnected(&self) {
        self.reconnected.notified().await
    }

    /// LISTEN is (back) up: re-check the waiters and wake the streams, since
    /// anything notified while it was down was missed.
    pub fn listen_restored(&self) {
        self.reconnected.notify_one();
        self.holder_moved.notify_one();
        self.wake_streams();
    }

    /// Attach `channel`'s local stream (number `stream_id`, as stored in the
    /// claimed rows); the returned waker detaches it on drop.
    pub fn attach_stream(self: &Arc<Self>, channel: ChannelId, stream_id: i64) -> StreamWaker {
        let seq = self.stream_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let notify = Arc::new(Notify::new());
        let handed = Arc::new(Mutex::new(VecDeque::new()));
        let claim = Arc::new(AtomicBool::new(false));
        self.streams.lock().expect("hub lock").insert(
            channel,
            LocalStream {
                seq,
                notify: notify.clone(),
                id: stream_id,
                handed: handed.clone(),
                claim: claim.clone(),
            },
        );
        StreamWaker {
            hub: self.clone(),
            channel,
            seq,
            notify,
            handed,
            claim,
            ever_handed: AtomicBool::new(false),
        }
    }

    /// How a job of `channel` about to be stored should reach its stream:
    /// the one place that decides it (see [`NewJobWake`]).
    pub fn new_job_wake(&self, channel: ChannelId) -> NewJobWake {
        if self.polled {
            return NewJobWake::Polled;
        }
        match self.streams.lock().expect("hub lock").get(&channel) {
            Some(stream) if stream.handed.lock().expect("hub lock").len() < HANDED_MAX => {
                NewJobWake::Claimed(stream.id)
            }
            Some(_) => NewJobWake::Local,
            None => NewJobWake::InCommit,
        }
    }

    /// Hand a job its insert claimed for stream `stream_id` to that stream;
    /// false when that stream is no longer here (the next stream claims the
    /// job again, as after any stream's end).
    pub fn hand(&self, channel: ChannelId, stream_id: i64, event: JobEvent) -> bool {
        match self.streams.lock().expect("hub lock").get(&channel) {
            Some(stream) if stream.id == stream_id => {
                stream.handed.lock().expect("hub lock").push_back(event);
                stream.notify.notify_one();
                true
            }
            _ => false,
        }
    }

    /// The stream's holder may have changed: a stream opened or closed
    /// somewhere (or LISTEN reconnected, and such news may have been missed).
    pub fn holder_moved(&self) {
        self.holder_moved.notify_one();
    }

    /// Resolves after [`holder_moved`](Hub::holder_moved) (a signal given
    /// while nobody waited is kept).
    pub async fn holder_may_have_moved(&self) {
        self.holder_moved.notified().await
    }

    /// Whether `channel`'s stream is held in this process now.
    pub fn holds_stream(&self, channel: ChannelId) -> bool {
        self.streams
            .lock()
            .expect("hub lock")
            .contains_key(&channel)
    }

    /// Tell `channel`'s local stream, if any, that new jobs may be waiting;
    /// false when there is none here. The wake is kept as a permit if the
    /// stream is busy, so it cannot be missed.
    pub fn wake_stream(&self, channel: ChannelId) -> bool {
        match self.streams.lock().expect("hub lock").get(&channel) {
            Some(stream) => {
                stream.wake();
                true
            }
            None => false,
        }
    }

    /// Wake every local stream (a notification that names no channel, from
    /// an instance of an earlier release; LISTEN back up).
    pub fn wake_streams(&self) {
        for stream in self.streams.lock().expect("hub lock").values() {
            stream.wake();
        }
    }

    pub fn set_listening(&self, up: bool) {
        let was = self.listening.swap(up, Ordering::SeqCst);
        if was && !up {
            self.remember(EVERY_JOB);
        }
    }

    /// The LISTEN connection is up.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

/// A job this process is ending ([`Hub::ending`]).
pub struct Ending {
    hub: Arc<Hub>,
    id: i64,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let heard = {
            let mut ending = self.hub.ending.lock().expect("hub lock");
            match ending.get_mut(&self.id) {
                Some((count, _)) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => ending.remove(&self.id).is_some_and(|(_, heard)| heard),
                None => false,
            }
        };
        // Heard meanwhile: what an end heard now would do, except that the
        // waiters read their own rows (the rare case of an end elsewhere).
        if heard && self.hub.heard_ended(self.id) {
            self.hub.wake_job(self.id, None);
        }
    }
}

/// One of the `max_waiting` places; given back on drop.
pub struct WaitPermit {
    hub: Arc<Hub>,
    channel: Option<ChannelId>,
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        self.hub.waiting.fetch_sub(1, Ordering::AcqRel);
        if let Some(id) = self.channel {
            let mut by_channel = self.hub.waiting_by_channel.lock().expect("hub lock");
            if let Some(waiting) = by_channel.get_mut(&id) {
                *waiting -= 1;
                if *waiting == 0 {
                    by_channel.remove(&id);
                }
            }
        }
    }
}

/// A registered interest in one job; unregisters on drop.
pub struct Waiter {
    hub: Arc<Hub>,
    id: i64,
    slot: Arc<Slot>,
}

impl Waiter {
    pub fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut slots = self.hub.slots.lock().expect("hub lock");
        if let Some(entry) = slots.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                slots.remove(&self.id);
            }
        }
    }
}

/// The local stream's wake-up and the jobs handed to it; detaches on drop.
pub struct StreamWaker {
    hub: Arc<Hub>,
    channel: ChannelId,
    seq: u64,
    notify: Arc<Notify>,
    handed: Arc<Mutex<VecDeque<JobEvent>>>,
    claim: Arc<AtomicBool>,
    ever_handed: AtomicBool,
}

impl StreamWaker {
    /// Whether a wake since the last call asked for a claim.
    pub fn take_claim(&self) -> bool {
        self.claim.swap(false, Ordering::SeqCst)
    }

    pub async fn woken(&self) {
        self.notify.notified().await
    }

    /// The jobs handed over since the last call, oldest first.
    pub fn take_handed(&self) -> Vec<JobEvent> {
        let handed: Vec<JobEvent> = self.handed.lock().expect("hub lock").drain(..).collect();
        if !handed.is_empty() {
            self.ever_handed.store(true, Ordering::Relaxed);
        }
        handed
    }

    /// Whether any job was ever handed to this stream (taken or not).
    pub fn handed_any(&self) -> bool {
        self.ever_handed.load(Ordering::Relaxed)
            || !self.handed.lock().expect("hub lock").is_empty()
    }
}

impl Drop for StreamWaker {
    fn drop(&mut self) {
        let mut streams = self.hub.streams.lock().expect("hub lock");
        if streams
            .get(&self.channel)
            .is_some_and(|local| local.seq == self.seq)
        {
            streams.remove(&self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn woken_since_sees_wakes_after_the_mark_only() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        hub.wake_job(1, None);
        let mark = hub.mark();
        assert!(
            !hub.woken_since(mark, 1),
            "a wake before the mark does not count"
        );
        hub.wake_job(2, None);
        assert!(hub.woken_since(mark, 2));
        assert!(!hub.woken_since(mark, 3));
    }

    #[test]
    fn woken_since_is_conservative_once_the_history_moved_on() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        let mark = hub.mark();
        for id in 0..(HISTORY as i64 + 10) {
            hub.wake_job(100_000 + id, None);
        }
        assert!(
            hub.woken_since(mark, 7),
            "unknown: the job must be read back"
        );
    }

    #[test]
    fn woken_since_is_conservative_when_listen_is_or_was_down() {
        let hub = Hub::new(10, WakeMode::Notify);
        let mark = hub.mark();
        assert!(
            hub.woken_since(mark, 1),
            "not listening: anything may be missed"
        );
        hub.set_listening(true);
        let mark = hub.mark();
        assert!(!hub.woken_since(mark, 1));
        hub.set_listening(false);
        hub.set_listening(true);
        assert!(hub.woken_since(mark, 1), "LISTEN went down since the mark");
    }

    #[tokio::test]
    async fn a_registered_waiter_is_notified_and_handed_the_job() {
        let hub = Hub::new(10, WakeMode::Notify);
        let waiter = hub.register(5);
        let notified = waiter.slot().notify.notified();
        hub.wake_job(5, None);
        notified.await;
        assert!(waiter.slot().latest().is_none());
    }

    fn job(id: i64, state: crate::job::JobState) -> Job {
        let now = chrono::Utc::now();
        Job {
            id,
            kind: "k".into(),
            state,
            payload: serde_json::value::RawValue::from_string("null".into()).unwrap(),
            result: None,
            error: None,
            attempts: 0,
            created_at: now,
            deadline: now,
            completed_at: None,
            channel: crate::job::DEFAULT_CHANNEL,
        }
    }

    #[test]
    fn an_end_heard_is_read_back_until_the_waiters_hold_it() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        assert!(!hub.heard_ended(4), "nobody waits here: nothing to read");
        let waiter = hub.register(4);
        let mark = hub.mark();
        assert!(hub.heard_ended(4), "a waiter without the end: read it back");
        assert!(hub.awaits_end(4));
        assert!(hub.woken_since(mark, 4));
        // The read found it still open (a hint is not the truth): the waiter
        // still awaits its end, and another notification is read again.
        hub.wake_job(4, Some(&job(4, crate::job::JobState::Delivered)));
        assert!(hub.heard_ended(4));
        hub.wake_job(4, Some(&job(4, crate::job::JobState::Done)));
        assert!(!hub.awaits_end(4));
        drop(waiter);
        assert!(!hub.awaits_end(4), "nobody waits any more");
    }

    #[test]
    fn the_end_of_a_job_ended_here_is_not_read_or_woken_again() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        let waiter = hub.register(9);
        // This process ended job 9: its waiters are handed the job.
        hub.wake_job(9, Some(&job(9, crate::job::JobState::Done)));
        let mark = hub.mark();
        // Then its own commit's notification arrives, before the waiter ran:
        // no read back (which would wake the waiters a second time).
        assert!(
            !hub.heard_ended(9),
            "the waiters hold the end: no read back"
        );
        assert!(!hub.awaits_end(9));
        assert!(!hub.woken_since(mark, 9), "not remembered as a new wake-up");
        assert_eq!(
            waiter.slot().latest().map(|job| job.state),
            Some(crate::job::JobState::Done)
        );
    }

    #[test]
    fn the_end_heard_while_this_process_ends_the_job_is_left_to_it() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        let waiter = hub.register(3);
        let ending = hub.ending(3);
        // The commit's notification arrives before the statement returned.
        assert!(
            !hub.heard_ended(3),
            "not read back: the request hands it over"
        );
        hub.wake_job(3, Some(&job(3, crate::job::JobState::Done)));
        let mark = hub.mark();
        drop(ending);
        assert!(!hub.awaits_end(3));
        assert!(!hub.woken_since(mark, 3), "handed over once");
        drop(waiter);
    }

    #[tokio::test]
    async fn the_end_heard_while_a_statement_here_failed_to_end_the_job_wakes_the_waiters() {
        let hub = Hub::new(10, WakeMode::Notify);
        hub.set_listening(true);
        let waiter = hub.register(6);
        let first = hub.ending(6);
        let second = hub.ending(6);
        let woken = waiter.slot().notify.notified();
        // Another process ended job 6 while two requests here tried to.
        assert!(!hub.heard_ended(6));
        drop(first);
        assert!(hub.awaits_end(6));
        let mark = hub.mark();
        // Neither ended it: the waiters read their row.
        drop(second);
        woken.await;
        assert!(waiter.slot().latest().is_none());
        assert!(hub.woken_since(mark, 6));
        assert!(!hub.heard_ended(7), "other jobs are not held back");
    }

    #[test]
    fn permits_are_limited_and_returned() {
        let hub = Hub::new(2, WakeMode::Notify);
        let a = hub.reserve(None).unwrap();
        let _b = hub.reserve(None).unwrap();
        assert!(hub.reserve(None).is_none());
        assert_eq!(hub.waiting(), 2);
        drop(a);
        assert!(hub.reserve(None).is_some());
    }

    #[test]
    fn a_channel_with_a_limit_of_its_own_refuses_beyond_it_and_others_still_wait() {
        let hub = Hub::new(10, WakeMode::Notify);
        let a = hub.reserve(Some((2, 1))).unwrap();
        assert!(hub.reserve(Some((2, 1))).is_none(), "channel 2 is full");
        assert_eq!(hub.waiting(), 1, "a refused place is given back");
        let _b = hub.reserve(Some((3, 1))).unwrap();
        let _c = hub.reserve(None).unwrap();
        drop(a);
        assert!(hub.reserve(Some((2, 1))).is_some());
    }
}
