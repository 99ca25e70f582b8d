//! The named channels as this instance knows them: names to ids and limits,
//! read from `backchannel.channels` at start, on SIGHUP (after creating the
//! channels the token files name) and when a name or id is not known yet (a
//! channel another instance created). Resolving a request's channel costs
//! no query once known.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Broker, BrokerError};
use crate::job::{ChannelId, DEFAULT_CHANNEL, DEFAULT_CHANNEL_NAME, Scope};
use crate::store::ChannelRow;

/// The channels by name and by id.
#[derive(Default)]
pub(super) struct ChannelMap {
    known: RwLock<Known>,
}

#[derive(Default)]
struct Known {
    by_name: HashMap<String, ChannelRow>,
    by_id: HashMap<ChannelId, ChannelRow>,
}

impl ChannelMap {
    fn replace(&self, rows: Vec<ChannelRow>) {
        let mut known = Known::default();
        for row in rows {
            known.by_id.insert(row.id, row.clone());
            known.by_name.insert(row.name.clone(), row);
        }
        *self.known.write().expect("channels lock") = known;
    }

    fn by_name(&self, name: &str) -> Option<ChannelRow> {
        if name == DEFAULT_CHANNEL_NAME {
            // Always there (sql/007); its limits may be set, so read them if known.
            let known = self.known.read().expect("channels lock");
            return Some(known.by_name.get(name).cloned().unwrap_or(ChannelRow {
                id: DEFAULT_CHANNEL,
                name: DEFAULT_CHANNEL_NAME.to_owned(),
                max_open_jobs: None,
                max_waiting: None,
            }));
        }
        self.known
            .read()
            .expect("channels lock")
            .by_name
            .get(name)
            .cloned()
    }

    fn by_id(&self, id: ChannelId) -> Option<ChannelRow> {
        self.known
            .read()
            .expect("channels lock")
            .by_id
            .get(&id)
            .cloned()
    }
}

impl Broker {
    /// Create the channels of `names` that do not exist yet and read them
    /// all (at start, and on SIGHUP after the token files were read again).
    pub async fn ensure_channels(&self, names: &[String]) -> Result<(), BrokerError> {
        let rows = self.store.ensure_channels(names).await?;
        self.channels.replace(rows);
        Ok(())
    }

    /// The channel named `name`, if it exists (read again from the table
    /// when this instance does not know it yet).
    pub async fn channel(&self, name: &str) -> Result<Option<ChannelRow>, BrokerError> {
        if let Some(row) = self.channels.by_name(name) {
            return Ok(Some(row));
        }
        self.channels.replace(self.store.channels().await?);
        Ok(self.channels.by_name(name))
    }

    /// The channel of id `id`, if this instance knows it.
    pub(super) fn channel_by_id(&self, id: ChannelId) -> Option<ChannelRow> {
        self.channels.by_id(id)
    }

    /// The scope of a token that names `names` (`None`: every channel).
    /// Names not in the table (yet) are left out.
    pub async fn scope(&self, names: Option<&[String]>) -> Result<Scope, BrokerError> {
        let Some(names) = names else {
            return Ok(Scope::All);
        };
        let mut ids = Vec::with_capacity(names.len());
        for name in names {
            if let Some(row) = self.channel(name).await? {
                ids.push(row.id);
            }
        }
        Ok(Scope::Only(ids.into()))
    }

    /// `channel`'s name for logs and metric labels (its id while unknown here).
    pub(super) fn channel_name(&self, id: ChannelId) -> String {
        match self.channel_by_id(id) {
            Some(row) => row.name,
            None if id == DEFAULT_CHANNEL => DEFAULT_CHANNEL_NAME.to_owned(),
            None => id.to_string(),
        }
    }

    /// `channel`'s own limit on waiting requests here, with its id, if set.
    pub(super) fn waiting_limit(&self, channel: ChannelId) -> Option<(ChannelId, usize)> {
        let limit = self.channel_by_id(channel)?.max_waiting?;
        Some((channel, usize::try_from(limit).ok()?))
    }
}
