//! The job as the contract shows it: its states, a new job, an answer, what
//! the stream sends, and the two notification channels SQL clients may LISTEN on.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// The channel that wakes the stream holder: a new job may be waiting. (A
/// macro as well, so that the store's statements can spell it in their text.)
macro_rules! channel_new {
    () => {
        "backchannel_new"
    };
}
/// The channel carrying the id of every job that reached a terminal state.
macro_rules! channel_done {
    () => {
        "backchannel_done"
    };
}
/// The channel that says the stream's holder changed (a stream opened or
/// closed): instances that forward read the holder's address again.
macro_rules! channel_holder {
    () => {
        "backchannel_holder"
    };
}
pub(crate) use {channel_done, channel_holder, channel_new};

/// `NOTIFY backchannel_new, ''`: a new job may be waiting for the stream.
pub const CHANNEL_NEW: &str = channel_new!();
/// `NOTIFY backchannel_done, '<id>'`: job `<id>` reached a terminal state.
pub const CHANNEL_DONE: &str = channel_done!();
/// `NOTIFY backchannel_holder, ''`: a stream opened or closed.
pub const CHANNEL_HOLDER: &str = channel_holder!();

/// How a new job reaches the stream, decided once per insert by the hub
/// ([`crate::wake::Hub::new_job_wake`]) and carried down to the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewJobWake {
    /// Poll mode: nothing is sent; the stream finds the job on its next poll.
    Polled,
    /// The stream is held in this process: woken directly once the job is
    /// stored (by the notifier's `NOTIFY backchannel_new` instead, should the
    /// stream have left this process meanwhile).
    Local,
    /// The stream numbered so is held in this process and takes jobs handed
    /// over: the insert stores the job already delivered to it (attempt 1,
    /// no claim statement), and the job is handed to the stream in memory
    /// (claimed again by the next stream, should this one have ended).
    Claimed(i64),
    /// The stream is held by another instance, or by none yet:
    /// `NOTIFY backchannel_new` leaves inside the insert's own commit.
    InCommit,
}

/// Where a job is in its life. The last four are terminal: never left again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Delivered,
    Done,
    Failed,
    Expired,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Delivered => "delivered",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        Some(match text {
            "pending" => JobState::Pending,
            "delivered" => JobState::Delivered,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "expired" => JobState::Expired,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Delivered)
    }
}

/// A job row, serialised exactly as the contract's job object. The payload,
/// result and error are kept as the stored JSON text: the broker never looks
/// inside them, and passes them on exactly as PostgreSQL stored them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub payload: Box<RawValue>,
    pub result: Option<Box<RawValue>>,
    pub error: Option<Box<RawValue>>,
    pub attempts: i32,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub deadline: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub completed_at: Option<DateTime<Utc>>,
    /// The job's channel: checked against the client's token, never shown.
    #[serde(skip, default = "default_channel")]
    pub channel: ChannelId,
}

/// A channel's id in `backchannel.channels` (sql/007).
pub type ChannelId = i32;

/// The channel of the paths without one (`/v1/jobs`, `/v1/stream`, ...)
/// and of every token configured without one.
pub const DEFAULT_CHANNEL: ChannelId = 1;

/// The default channel's name.
pub const DEFAULT_CHANNEL_NAME: &str = "default";

fn default_channel() -> ChannelId {
    DEFAULT_CHANNEL
}

/// Whether `name` is a channel's name: a DNS label (lowercase letters,
/// digits, inner hyphens; 1 to 63 characters), as the schema's domain
/// `backchannel.channel_name` says.
pub fn is_channel_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| inner(b) || *b == b'-')
        && bytes.first().is_some_and(inner)
        && bytes.last().is_some_and(inner)
}

impl Job {
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }

    /// The stream's event for this job (as delivered: its attempt number).
    pub fn event(&self) -> JobEvent {
        JobEvent {
            id: self.id,
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            deadline: self.deadline,
            attempt: self.attempts,
        }
    }
}

/// What the stream sends for one job (`data:` of an `event: job`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEvent {
    pub id: i64,
    pub kind: String,
    pub payload: Box<RawValue>,
    #[serde(serialize_with = "rfc3339")]
    pub deadline: DateTime<Utc>,
    pub attempt: i32,
}

/// A new job as validated by the edge (or the command line).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub timeout_secs: f64,
    pub idempotency_key: Option<String>,
    /// Its channel ([`DEFAULT_CHANNEL`] unless the route names another).
    pub channel: ChannelId,
}

/// The listener's answer: exactly one of a result or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Result(Value),
    Error(Value),
}

impl Answer {
    pub fn state(&self) -> JobState {
        match self {
            Answer::Result(_) => JobState::Done,
            Answer::Error(_) => JobState::Failed,
        }
    }
}

/// RFC 3339 in UTC with microseconds, as PostgreSQL stores them.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// The channels a client may use: its token's, resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every channel (a monitor token; the broker's own work).
    All,
    /// These channels only.
    Only(std::sync::Arc<[ChannelId]>),
}

impl Scope {
    /// The default channel only: what a token configured without channels may use.
    pub fn default_channel() -> Scope {
        Scope::Only(std::sync::Arc::from([DEFAULT_CHANNEL]))
    }

    /// Whether a job of `channel` is the client's to see.
    pub fn allows(&self, channel: ChannelId) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(channels) => channels.contains(&channel),
        }
    }

    /// As the statements that end jobs take it: an array literal (`{1,3}`),
    /// or `None` for every channel.
    pub fn sql(&self) -> Option<std::sync::Arc<str>> {
        match self {
            Scope::All => None,
            Scope::Only(channels) => {
                let ids: Vec<String> = channels.iter().map(ChannelId::to_string).collect();
                Some(format!("{{{}}}", ids.join(",")).into())
            }
        }
    }
}

#[cfg(test)]
mod channel_tests {
    use super::*;

    #[test]
    fn channel_names_are_dns_labels() {
        for good in ["default", "site-a", "a", "0", "a-b-c", &"x".repeat(63)] {
            assert!(is_channel_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Site",
            "a_b",
            "a.b",
            "a b",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(!is_channel_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_scope_allows_its_channels_and_says_them_to_sql() {
        let scope = Scope::Only(std::sync::Arc::from([1, 7]));
        assert!(scope.allows(7) && scope.allows(1) && !scope.allows(2));
        assert_eq!(scope.sql().as_deref(), Some("{1,7}"));
        assert!(Scope::All.allows(99));
        assert_eq!(Scope::All.sql(), None);
    }
}
