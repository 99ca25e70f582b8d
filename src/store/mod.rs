//! All database calls and every SQL statement. Handlers and the domain never
//! see SQL.
//!
//! - [`Store`]: the statements run on the query pool, one file per
//!   operation: `insert` and `finish` (in groups, over the generic
//!   `batch` queue), `read`, `notify`, `reap`, `status`, `health`;
//! - [`StreamSession`]: the stream's own session, its advisory lock and claim;
//! - [`ListenSession`]: the instance's LISTEN session;
//! - [`connect`]: where connections go (the string read by [`conninfo`] as
//!   libpq reads it, with [`tls`]), the pool, dedicated
//!   sessions and what each kind of session sets when it starts; [`probe`]:
//!   the check that a dedicated session is one;
//! - [`migrate`]: the numbered migrations of `sql/`; [`schema`]: serve's check of them;
//! - [`sql`]: the text of every statement, grouped by what it touches.

mod batch;
mod channels;
pub mod connect;
pub mod conninfo;
mod error;
mod finish;
mod health;
mod insert;
pub mod listen_session;
pub mod migrate;
mod notify;
mod pooled;
mod pooler;
pub mod probe;
mod read;
mod reap;
mod rows;
pub mod schema;
pub mod sql;
mod status;
mod stream_session;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Pool;
use prometheus_client::metrics::counter::Counter as Count;
use prometheus_client::metrics::histogram::Histogram;

pub use channels::ChannelRow;
pub use connect::{Session, Target};
pub use error::StoreError;
pub use listen_session::{Heard, ListenSession};
pub use pooler::Naming;
pub use probe::probe_session;
pub use read::ReadJob;
pub use reap::Reaped;
pub use status::Holder;
pub use stream_session::{Claimed, StreamSession};

use batch::{Batcher, Settled};
use finish::Finish;
use insert::Insert;
use pooled::Pooled;

pub use finish::Ended;
pub use insert::Inserted;

/// Where the group-commit loops record how many requests each batch carried,
/// and how many requests they left to run on their own.
pub struct BatchSizes {
    pub insert: Histogram,
    pub finish: Histogram,
    pub insert_alone: Count,
    pub finish_alone: Count,
}

/// Statements sent by one instance, on every path (pool and dedicated sessions).
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The query pool, and how its statements go out (shared with the pool's
/// set-up of each new connection).
pub struct QueryPool {
    pub pool: Pool,
    pub naming: Naming,
}

/// The query pool, a count of the statements the broker sent, and the two
/// group-commit queues (inserts; answers and cancels).
pub struct Store {
    db: Arc<Pooled>,
    inserts: Batcher<Insert, Settled<Inserted>>,
    finishes: Batcher<Finish, Settled<Option<Ended>>>,
    /// Turns for requests run on their own (their key or row held by another
    /// session): at most half the pool waits on locks, so that the group
    /// commits always find a connection.
    alone: tokio::sync::Semaphore,
    insert_alone: Count,
    finish_alone: Count,
}

impl Store {
    /// The store over `pool`; starts the group-commit loops (they end with
    /// it), which record each batch's size in `sizes`. Once its naming is
    /// unnamed (set so, or switched on the first sign of a transaction
    /// pooler), every pooled statement goes out as the unnamed statement,
    /// with its declared parameter types, in one round trip (Parse, Bind,
    /// Execute): nothing named outlives its transaction, as a transaction
    /// pooler that does not track prepared statements needs.
    ///
    /// At most `max_queued` requests wait for each group commit: beyond it a
    /// request is refused at once ([`StoreError::Overloaded`]), nothing stored.
    pub fn new(pool: QueryPool, sizes: BatchSizes, max_queued: usize) -> Store {
        let alone = (pool.pool.status().max_size / 2).max(1);
        let db = Arc::new(Pooled {
            pool: pool.pool,
            statements: Counter::default(),
            naming: pool.naming,
        });
        let inserting = db.clone();
        let finishing = db.clone();
        Store {
            inserts: Batcher::new(max_queued, move |batch| {
                sizes.insert.observe(batch.len() as f64);
                let db = inserting.clone();
                async move { insert::batch(&db, batch).await }
            }),
            finishes: Batcher::new(max_queued, move |batch| {
                sizes.finish.observe(batch.len() as f64);
                let db = finishing.clone();
                async move { finish::batch(&db, batch).await }
            }),
            alone: tokio::sync::Semaphore::new(alone),
            insert_alone: sizes.insert_alone.clone(),
            finish_alone: sizes.finish_alone.clone(),
            db,
        }
    }

    /// A turn to run a request on its own (see `alone`).
    async fn alone_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.alone.acquire().await.ok()
    }

    /// Whether both group-commit loops run.
    pub fn batching(&self) -> bool {
        self.inserts.is_alive() && self.finishes.is_alive()
    }

    pub fn pool(&self) -> &Pool {
        &self.db.pool
    }

    /// Whether the pool sends its statements unnamed now (set so, or
    /// switched behind a transaction pooler).
    pub fn unnamed(&self) -> bool {
        self.db.naming.unnamed()
    }

    /// How many statements this instance has sent so far (every path counts).
    pub fn statements(&self) -> u64 {
        self.db.statements.get()
    }

    /// Requests waiting for the next group commit: (inserts, answers and cancels).
    pub fn queued(&self) -> (usize, usize) {
        (self.inserts.queued(), self.finishes.queued())
    }

    /// The counter, shared with the instance's dedicated sessions.
    pub fn counter(&self) -> Counter {
        self.db.statements.clone()
    }
}
