//! A replica among several on one PostgreSQL store: every change another replica commits is
//! applied here as its notice arrives, and everything is reloaded after a lost connection and
//! every `resync_interval`.
//!
//! **Staleness.** A change is in force here once its notice is delivered and its key reloaded:
//! milliseconds on a healthy network (the replica tests measure it). If a notice is lost without
//! the connection being lost, which PostgreSQL does not do, the periodic resync bounds the
//! staleness at `resync_interval` (30 s by default). While the store is unreachable, this replica
//! keeps deciding with the keys it has: a key revoked meanwhile on another replica still works
//! here until the connection is back (the listener retries every [`RECONNECT_EVERY`]) and the
//! resync that follows it is done. Key changes made here fail with 503 meanwhile.

use std::time::Duration;

use keygate::KeyId;
use keygate_store::{Notice, PgListener};
use tokio::sync::watch;

use crate::state::AppState;

/// How often a listener that lost its connection tries again.
pub(crate) const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// The most key notices applied in one batch (one copy of the keyring).
const MAX_BATCH: usize = 1_024;

/// Applies other replicas' changes until `stopped`.
pub(crate) async fn follow(
    state: AppState,
    mut changes: PgListener,
    mut stopped: watch::Receiver<bool>,
) {
    let mut resync = tokio::time::interval(state.config.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let first = tokio::select! {
            notice = changes.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
            _ = resync.tick() => Notice::Resync,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        // Whatever else is already waiting goes in the same batch.
        let mut work = Work::default();
        work.add(first);
        while work.keys.len() < MAX_BATCH
            && let Some(notice) = changes.try_recv()
        {
            work.add(notice);
        }
        let applying = state.clone();
        // Store reads: off the async workers.
        match tokio::task::spawn_blocking(move || work.apply(&applying)).await {
            Ok(true) => {}
            Ok(false) => resync.reset_after(RECONNECT_EVERY),
            Err(_) => tracing::warn!("the replication task failed"),
        }
    }
}

/// What a batch of notices asks for.
#[derive(Default)]
struct Work {
    keys: Vec<KeyId>,
    documents: bool,
    resync: bool,
}

impl Work {
    fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Key(id) => self.keys.push(id),
            Notice::Document { .. } => self.documents = true,
            Notice::Resync => self.resync = true,
        }
    }

    /// Applies it; false when the store failed (the next resync comes soon, not in 30 s).
    fn apply(self, state: &AppState) -> bool {
        let keys = if self.resync {
            state.resync_keys()
        } else {
            state.sync_keys(&self.keys)
        };
        let documents = if self.resync || self.documents {
            state.reload_documents()
        } else {
            Ok(())
        };
        match (keys, documents) {
            (Ok(changed), Ok(())) => {
                if changed > 0 {
                    tracing::info!(
                        changed,
                        resync = self.resync,
                        "applied other replicas' key changes"
                    );
                }
                true
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot reload changes from the store; retrying soon");
                false
            }
        }
    }
}
