//! The raw SQL floor: the same hand-off with plain statements over
//! tokio-postgres and no HTTP, using the naive protocol of one NOTIFY per
//! transaction:
//!
//! 1. submitter: `SELECT backchannel.submit(...)` (insert + NOTIFY new);
//! 2. listener: woken by LISTEN, claims open jobs (the broker's claim statement);
//! 3. listener: answers each job (update + NOTIFY done, one transaction each);
//! 4. submitter: woken by LISTEN, reads the row.
//!
//! It gets the broker's connection budget: `connections` query clients shared
//! by both sides (tokio-postgres pipelines concurrent statements on a client),
//! plus a LISTEN session per side and the claimer's session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Statement};
use tokio_util::sync::CancellationToken;

use super::load::{self, LoadOutcome, Window};

const SUBMIT: &str = "SELECT backchannel.submit('bench.echo', $1::jsonb, interval '30 seconds')";
/// The floor claims with the broker's own claim statement and stream-session
/// settings: it gets every advantage the broker has on the database side.
use backchannel::store::sql::stream::{CLAIM_JOBS, STREAM_SESSION_SETUP};
/// The floor's one stream, and the jobs it claims per statement (the broker's batch).
const STREAM_ID: i64 = 1;
const CLAIM_BATCH: i64 = 32;
const ANSWER: &str = "WITH answered AS (
        UPDATE backchannel.jobs SET state = 'done', result = $2, completed_at = now()
        WHERE id = $1 AND completed_at IS NULL AND deadline > now()
        RETURNING id)
    SELECT pg_notify('backchannel_done', id::text) FROM answered";
const READ: &str = "SELECT state FROM backchannel.jobs WHERE id = $1";

/// A query client with the floor's statements prepared on it.
struct Prepared {
    client: Client,
    submit: Statement,
    answer: Statement,
    read: Statement,
}

impl Prepared {
    async fn connect(url: &str) -> anyhow::Result<Prepared> {
        let client = super::pg::connect(url).await?;
        Ok(Prepared {
            submit: client.prepare(SUBMIT).await?,
            answer: client.prepare(ANSWER).await?,
            read: client.prepare(READ).await?,
            client,
        })
    }
}

/// Done notifications that arrived, or submitters waiting for one.
#[derive(Default)]
struct DoneBoard {
    slots: Mutex<HashMap<i64, Slot>>,
}

enum Slot {
    Waiting(oneshot::Sender<()>),
    Arrived,
}

impl DoneBoard {
    /// A notification for `id` arrived: wake its submitter, or leave word.
    fn arrived(&self, id: i64) {
        let mut slots = self.slots.lock().expect("board lock");
        match slots.remove(&id) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(());
            }
            _ => {
                slots.insert(id, Slot::Arrived);
            }
        }
    }

    /// Wait for `id`'s notification (which may have come already).
    async fn wait(&self, id: i64) -> Result<(), String> {
        let rx = {
            let mut slots = self.slots.lock().expect("board lock");
            if let Some(Slot::Arrived) = slots.remove(&id) {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            slots.insert(id, Slot::Waiting(tx));
            rx
        };
        rx.await
            .map_err(|_| format!("job {id}: no done notification"))
    }
}

/// A LISTEN session that calls `on` for each notification until dropped.
async fn listen(
    url: &str,
    channel: &str,
    on: impl Fn(&str) + Send + 'static,
) -> anyhow::Result<(Client, JoinHandle<()>)> {
    let (client, mut connection) = super::pg::open(url).await?;
    let driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                on(n.payload());
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    Ok((client, driver))
}

/// The raw SQL hand-off under `concurrency` submitters for one window.
pub async fn run(
    url: &str,
    connections: usize,
    concurrency: usize,
    window: Window,
) -> anyhow::Result<LoadOutcome> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        clients.push(Arc::new(Prepared::connect(url).await?));
    }
    let clients = Arc::new(clients);
    let board = Arc::new(DoneBoard::default());
    let wake_claimer = Arc::new(Notify::new());

    let done_board = board.clone();
    let (done_session, done_driver) = listen(url, "backchannel_done", move |payload| {
        if let Ok(id) = payload.parse() {
            done_board.arrived(id);
        }
    })
    .await
    .context("floor: LISTEN backchannel_done")?;
    let claimer_wake = wake_claimer.clone();
    let (new_session, new_driver) = listen(url, "backchannel_new", move |_| {
        claimer_wake.notify_one();
    })
    .await
    .context("floor: LISTEN backchannel_new")?;

    let stop = CancellationToken::new();
    let claimer = tokio::spawn(claim_and_answer(
        super::pg::connect(url).await?,
        clients.clone(),
        wake_claimer,
        stop.clone(),
    ));

    let outcome = load::drive(concurrency, window, move |index, sequence| {
        let db = clients[index % clients.len()].clone();
        let board = board.clone();
        async move {
            let payload = serde_json::json!({ "n": sequence, "submitter": index });
            let id: i64 = db
                .client
                .query_one(&db.submit, &[&payload])
                .await
                .map_err(|e| format!("submit: {e}"))?
                .get(0);
            board.wait(id).await?;
            let row = db
                .client
                .query_one(&db.read, &[&id])
                .await
                .map_err(|e| format!("read: {e}"))?;
            let state: &str = row.get(0);
            if state == "done" {
                Ok(())
            } else {
                Err(format!("job {id} is {state} after its done notification"))
            }
        }
    })
    .await;

    stop.cancel();
    claimer.await.context("floor: the claimer failed")??;
    drop((done_session, new_session));
    done_driver.abort();
    new_driver.abort();
    Ok(outcome)
}

/// The listener side: claim on every wake-up until a short batch, answering
/// each claimed job concurrently (one notifying transaction per answer).
async fn claim_and_answer(
    session: Client,
    clients: Arc<Vec<Arc<Prepared>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    session.batch_execute(STREAM_SESSION_SETUP).await?;
    let claim = session.prepare(CLAIM_JOBS).await?;
    let mut turn = 0usize;
    loop {
        loop {
            let rows = session
                .query(
                    &claim,
                    &[&STREAM_ID, &CLAIM_BATCH, &backchannel::job::DEFAULT_CHANNEL],
                )
                .await?;
            for row in &rows {
                let id: i64 = row.get(0);
                let payload: serde_json::Value = row.get(2);
                let db = clients[turn % clients.len()].clone();
                turn += 1;
                tokio::spawn(async move {
                    let _ = db.client.query(&db.answer, &[&id, &payload]).await;
                });
            }
            if (rows.len() as i64) < CLAIM_BATCH {
                break;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}
