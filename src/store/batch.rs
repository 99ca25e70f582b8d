//! Group commit: requests that arrive while a batch is in flight are run
//! together as the next batch, in one statement and one transaction. Nothing
//! waits on a timer: at low load a request finds no batch in flight and goes
//! at once (a batch of one); under load each commit carries everything that
//! accumulated during the previous one.
//!
//! One request's trouble stays its own: the queue is bounded (a request
//! beyond it is refused at once, nothing stored), a batch that panics fails
//! only its own requests and the loop goes on, and a batch function settles
//! a request whose row or key another session holds as [`Settled::Alone`]:
//! the request then runs on its own, outside the loop, and only it waits.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most requests one batch carries (one statement's arrays).
pub const MAX_BATCH: usize = 512;

type Request<I, O> = (I, oneshot::Sender<O>);

/// Why a request got no output from the batch loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its bound already: refused before anything was done.
    Full(usize),
    /// The loop is gone or its batch failed without an outcome (a panic):
    /// the request's outcome is unknown.
    Lost,
}

/// A queue in front of a batch function, run on a task of its own.
pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Request<I, O>>,
    /// Requests waiting for the next batch.
    queued: Arc<AtomicUsize>,
    /// The most requests that may wait for a batch.
    bound: usize,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the batch loop: `run` takes a batch and returns one output per
    /// input, in the same order. At most `bound` requests wait for a batch.
    /// The loop ends when the batcher is dropped.
    pub fn new<F, Fut>(bound: usize, run: F) -> Batcher<I, O>
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let (queue, mut requests) = mpsc::unbounded_channel::<Request<I, O>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        tokio::spawn(async move {
            let mut inputs = Vec::new();
            let mut replies = Vec::new();
            while let Some((input, reply)) = requests.recv().await {
                inputs.push(input);
                replies.push(reply);
                while inputs.len() < MAX_BATCH {
                    match requests.try_recv() {
                        Ok((input, reply)) => {
                            inputs.push(input);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                taken.fetch_sub(inputs.len(), Ordering::Relaxed);
                let batch = std::mem::take(&mut inputs);
                // A panic fails this batch's requests (their replies drop:
                // `Lost`), never the loop and the requests after it.
                match AssertUnwindSafe(run(batch)).catch_unwind().await {
                    Ok(outputs) => {
                        debug_assert_eq!(outputs.len(), replies.len());
                        for (reply, output) in replies.drain(..).zip(outputs) {
                            // The asker may be gone: its outcome is settled anyway.
                            let _ = reply.send(output);
                        }
                    }
                    Err(_) => {
                        tracing::error!(requests = replies.len(), "a group commit panicked");
                        replies.clear();
                    }
                }
            }
        });
        Batcher {
            queue,
            queued,
            bound,
        }
    }

    /// Requests waiting for the next batch now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the batch loop still runs.
    pub fn is_alive(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Queue `input` for the next batch and wait for its output. Refused at
    /// once, nothing done, when `bound` requests wait already.
    pub async fn call(&self, input: I) -> Result<O, Refused> {
        let before = self.queued.fetch_add(1, Ordering::Relaxed);
        if before >= self.bound {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Full(before));
        }
        let (reply, output) = oneshot::channel();
        if self.queue.send((input, reply)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Lost);
        }
        output.await.map_err(|_| Refused::Lost)
    }
}

impl From<Refused> for StoreError {
    fn from(refused: Refused) -> StoreError {
        match refused {
            Refused::Full(queued) => StoreError::Overloaded(queued),
            Refused::Lost => StoreError::Unavailable(
                "the group commit carrying this request failed (see the log) or the broker \
                 is shutting down"
                    .into(),
            ),
        }
    }
}

/// What a batch made of one request.
pub enum Settled<T> {
    /// Its outcome.
    Now(Result<T, StoreError>),
    /// Another session holds its key or its row: run it on its own, outside
    /// the batch loop, where only it waits.
    Alone,
}

/// Every request of `which` without an outcome yet gets its own copy of
/// `error` (the same classified error: read-only stays read-only).
pub fn fail<T>(which: &[usize], error: &StoreError, outcomes: &mut [Option<Settled<T>>]) {
    for &i in which {
        if outcomes[i].is_none() {
            outcomes[i] = Some(Settled::Now(Err(error.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn what_accumulates_during_a_batch_goes_in_the_next() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (seen, release) = (sizes.clone(), gate.clone());
        let batcher = Arc::new(Batcher::new(100, move |batch: Vec<u32>| {
            let (seen, release) = (seen.clone(), release.clone());
            async move {
                seen.lock().unwrap().push(batch.len());
                release.acquire().await.unwrap().forget();
                batch.into_iter().map(|n| n * 10).collect()
            }
        }));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // The first batch (of one) is in flight: these three gather.
        let rest: Vec<_> = (2..5)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(n).await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(10));
        let outputs: Vec<_> = futures_util::future::join_all(rest).await;
        let outputs: Vec<_> = outputs.into_iter().map(|o| o.unwrap()).collect();
        assert_eq!(outputs, [Ok(20), Ok(30), Ok(40)]);
        assert_eq!(*sizes.lock().unwrap(), [1, 3]);
    }

    #[tokio::test]
    async fn beyond_the_bound_a_request_is_refused_at_once() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let release = gate.clone();
        let batcher = Arc::new(Batcher::new(2, move |batch: Vec<u32>| {
            let release = release.clone();
            async move {
                release.acquire().await.unwrap().forget();
                batch
            }
        }));
        // One in flight (taken off the queue), two queued behind it.
        let mut calls = vec![];
        for n in 0..3 {
            let b = batcher.clone();
            calls.push(tokio::spawn(async move { b.call(n).await }));
            while batcher.queued() != 0 && n == 0 {
                tokio::task::yield_now().await;
            }
            tokio::task::yield_now().await;
        }
        while batcher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(batcher.call(9).await, Err(Refused::Full(2)));
        gate.add_permits(10);
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
    }

    #[test]
    fn every_request_of_a_failed_batch_gets_the_same_classified_error() {
        let mut outcomes: Vec<Option<Settled<()>>> = vec![None, None, None];
        outcomes[1] = Some(Settled::Now(Ok(())));
        fail(&[0, 1, 2], &StoreError::ReadOnly, &mut outcomes);
        for i in [0, 2] {
            assert!(
                matches!(outcomes[i], Some(Settled::Now(Err(StoreError::ReadOnly)))),
                "request {i} is read-only too, not merely unavailable"
            );
        }
        assert!(
            matches!(outcomes[1], Some(Settled::Now(Ok(())))),
            "settled ones keep theirs"
        );
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_its_requests_only() {
        let batcher = Batcher::new(10, |batch: Vec<u32>| async move {
            assert!(!batch.contains(&13), "unlucky");
            batch
        });
        assert_eq!(batcher.call(13).await, Err(Refused::Lost));
        assert_eq!(batcher.call(7).await, Ok(7));
        assert!(batcher.is_alive());
    }
}
