//! Group commit: requests that arrive while a batch is in flight are run
//! together as the next batch, in one statement and one transaction. Nothing
//! waits on a timer: at low load a request finds no batch in flight and goes
//! at once (a batch of one); under load each commit carries everything that
//! accumulated during the previous one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most requests one batch carries (one statement's arrays).
pub const MAX_BATCH: usize = 512;

type Request<I, O> = (I, oneshot::Sender<O>);

/// A queue in front of a batch function, run on a task of its own.
pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Request<I, O>>,
    /// Requests waiting for the next batch.
    queued: Arc<AtomicUsize>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the batch loop: `run` takes a batch and returns one output per
    /// input, in the same order. The loop ends when the batcher is dropped.
    pub fn new<F, Fut>(run: F) -> Batcher<I, O>
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
                let outputs = run(std::mem::take(&mut inputs)).await;
                debug_assert_eq!(outputs.len(), replies.len());
                for (reply, output) in replies.drain(..).zip(outputs) {
                    // The asker may be gone: its outcome is settled anyway.
                    let _ = reply.send(output);
                }
            }
        });
        Batcher { queue, queued }
    }

    /// Requests waiting for the next batch now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queue `input` for the next batch and wait for its output; `None` if
    /// the batch loop is gone (the runtime is shutting down).
    pub async fn call(&self, input: I) -> Option<O> {
        let (reply, output) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.send((input, reply)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        output.await.ok()
    }
}

/// Every request of `which` without an outcome yet gets `error` (the first
/// the error itself, the others its description: their outcome is the same).
pub fn fail<T>(which: &[usize], error: StoreError, outcomes: &mut [Option<Result<T, StoreError>>]) {
    let text = error.to_string();
    let mut error = Some(error);
    for &i in which {
        if outcomes[i].is_some() {
            continue;
        }
        let this = match error.take() {
            Some(error) => error,
            None => StoreError::Unavailable(text.clone()),
        };
        outcomes[i] = Some(Err(this));
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
        let batcher = Arc::new(Batcher::new(move |batch: Vec<u32>| {
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
        assert_eq!(first.await.unwrap(), Some(10));
        let outputs: Vec<_> = futures_util::future::join_all(rest).await;
        let outputs: Vec<_> = outputs.into_iter().map(|o| o.unwrap()).collect();
        assert_eq!(outputs, [Some(20), Some(30), Some(40)]);
        assert_eq!(*sizes.lock().unwrap(), [1, 3]);
    }
}
