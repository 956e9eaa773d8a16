//! The PostgreSQL backend: one database shared by several replicas. Every committed key change
//! is announced with `NOTIFY`, so that each replica can reload that key at once
//! ([`PgStore::listen`]).
//!
//! The [`KeyStore`] trait is synchronous, and a server calls it from its request handlers, which
//! run on the server's own async runtime. A `block_on` there would panic, so the store owns a
//! small runtime of its own: each call is spawned onto it, and the calling thread waits for the
//! answer on a channel, as it waits for SQLite's disk. Every call has a deadline
//! ([`PgOptions::timeout`]): a database that stops answering fails requests with
//! [`StoreError::Unavailable`] instead of hanging them.

mod schema;

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::poll_fn;
use keygate::{KeyId, KeyState, RateLimitState, Usage};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio_postgres::{AsyncMessage, Client, Config, IsolationLevel, NoTls, Row};

pub use schema::PG_MIGRATIONS;

use crate::{Commit, Document, DocumentWrite, KeyStore, KeyWrite, StoreError, StoredKey, rows};

/// The `NOTIFY` channel every commit announces its changes on. A payload is `key:<id>` (32 hex
/// digits) for a key written or deleted, or `doc:<kind>/<id>` for a document.
pub const CHANNEL: &str = "keygate";

/// How a [`PgStore`] connects and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOptions {
    /// At most this many connections at once (default 8). Calls beyond it wait for one.
    pub pool_size: usize,
    /// The deadline of every call, connecting included (default 5 s).
    pub timeout: Duration,
    /// `application_name`, unless the URL sets one (default `keygate`): how an operator tells a
    /// replica's connections apart in `pg_stat_activity`.
    pub application_name: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            timeout: Duration::from_secs(5),
            application_name: "keygate".to_owned(),
        }
    }
}

impl PgOptions {
    /// These options with `application_name` set.
    #[must_use]
    pub fn with_application_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.application_name);
        self
    }

    /// These options with the deadline of every call set.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A [`KeyStore`] in a PostgreSQL database, shared by any number of replicas.
///
/// * The same tables as [`SqliteStore`](crate::SqliteStore), migrated on connect
///   ([`PG_MIGRATIONS`]; two replicas starting at once take turns under an advisory lock).
/// * A commit is one transaction, durable (PostgreSQL's default `synchronous_commit`) before
///   [`commit`](KeyStore::commit) returns, and it sends one `NOTIFY` per key and document it
///   writes, delivered to listeners only if and when it commits.
/// * Usage deltas are added under a row lock (`SELECT ... FOR UPDATE`), so replicas flushing at
///   once add up, and rate-limiter states keep the later arrival time.
/// * Plain TCP, no TLS: run it on loopback or a private network.
///
/// Do not call it from inside a task of its own runtime (there is none a caller can reach: the
/// listener hands its notices over a channel).
///
/// ```no_run
/// use keygate::{Catalog, TokenFormat};
/// use keygate_store::{KeyStore, PgStore, load_keyring};
///
/// let store = PgStore::connect("postgres://keygate@127.0.0.1:5432/keygate")?;
/// let keyring = load_keyring(&store, &Catalog::read_write_delete(), TokenFormat::default())?;
/// # Ok::<(), keygate_store::StoreError>(())
/// ```
#[derive(Debug)]
pub struct PgStore {
    pool: Arc<Pool>,
    runtime: OwnedRuntime,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`, or
    /// PostgreSQL's `key=value` form) with [`PgOptions::default`], and migrates it.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgOptions::default())
    }

    /// Connects with `options`, and migrates the database to [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
    pub fn connect_with(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config = Config::from_str(url)?;
        if config.get_application_name().is_none() {
            config.application_name(&options.application_name);
        }
        config.connect_timeout(options.timeout);
        // A connection whose peer vanished (a cable, a firewall) is found dead by keepalives
        // rather than waited on forever.
        config.keepalives_idle(Duration::from_secs(10));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keygate-postgres")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Unavailable(format!("cannot start a runtime: {error}")))?;
        let store = Self {
            pool: Arc::new(Pool {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.pool_size.max(1)),
                timeout: options.timeout,
            }),
            runtime: OwnedRuntime(Some(runtime)),
        };
        store.block(|pool| async move {
            let mut pooled = pool.get().await?;
            schema::migrate(pooled.client()?).await
        })?;
        Ok(store)
    }

    /// The database's schema version: [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) once connected.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.block(|pool| async move {
            let client = pool.get().await?;
            schema::version(&client).await
        })
    }

    /// Starts listening for changes: the [`PgListener`] yields a [`Notice`] per key or document
    /// another commit (this replica's too) wrote, and [`Notice::Resync`] whenever it (re)connects,
    /// after which the caller reloads everything. On a lost connection it reconnects, retrying
    /// every `retry` at most, for as long as the listener lives.
    pub fn listen(&self, retry: Duration) -> PgListener {
        let (sender, receiver) = mpsc::channel(NOTICE_BUFFER);
        let config = self.pool.config.clone();
        let timeout = self.pool.timeout;
        let task = self
            .runtime
            .handle()
            .spawn(listen(config, sender, retry, timeout));
        PgListener {
            notices: receiver,
            task,
        }
    }

    /// Runs the future `call` makes on the store's runtime, under the deadline, and waits for
    /// its answer on this thread.
    fn block<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Pool>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let future = call(Arc::clone(&self.pool));
        let timeout = self.pool.timeout;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.runtime.handle().spawn(async move {
            let answer = tokio::time::timeout(timeout, future)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(format!(
                        "no answer from PostgreSQL within {timeout:?}"
                    )))
                });
            // The caller waits for it unless it panicked: nothing to do then.
            let _ = sender.send(answer);
        });
        receiver.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the PostgreSQL store's runtime stopped".to_owned(),
            ))
        })
    }
}

/// A runtime shut down without waiting on drop: dropping a runtime the usual way blocks, which
/// panics inside another runtime (a server dropping its store).
#[derive(Debug)]
struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            // Taken only by `drop`.
            None => unreachable_handle(),
        }
    }
}

#[expect(
    clippy::panic,
    reason = "unreachable: the runtime is taken only when the store is dropped"
)]
fn unreachable_handle() -> &'static tokio::runtime::Handle {
    panic!("the PostgreSQL store's runtime is gone")
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A fixed number of connections: a semaphore bounds them, idle ones wait in a list, and a
/// connection found closed is dropped and replaced by a new one on the next call.
#[derive(Debug)]
struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
    timeout: Duration,
}

impl Pool {
    async fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the connection pool is closed".to_owned()))?;
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some(client) if !client.is_closed() => {
                    return Ok(Pooled {
                        pool: self,
                        client: Some(client),
                        _permit: permit,
                    });
                }
                Some(_closed) => {}
                None => break,
            }
        }
        let client = connect(&self.config).await?;
        Ok(Pooled {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

/// Opens a connection and drives it on the current runtime until it closes.
async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // An error here closes the client, which the pool then drops; the call that was using
        // it fails with the error.
        let _closed = connection.await;
    });
    Ok(client)
}

/// A connection on loan from the [`Pool`]; back in the idle list when dropped, unless closed.
struct Pooled<'p> {
    pool: &'p Pool,
    client: Option<Client>,
    _permit: SemaphorePermit<'p>,
}

impl Pooled<'_> {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".to_owned()))
    }
}

impl core::ops::Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        match &self.client {
            Some(client) => client,
            None => unreachable_client(),
        }
    }
}

#[expect(
    clippy::panic,
    reason = "unreachable: the client is taken only when the loan is dropped"
)]
fn unreachable_client() -> &'static Client {
    panic!("a pooled connection was used after its return")
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
        }
    }
}

/// A commit's writes as plain data, serialized on the caller's thread before they travel to
/// the store's runtime.
enum Write {
    Key {
        id: [u8; 16],
        json: String,
        secrets: Vec<[u8; 32]>,
    },
    DeleteKey([u8; 16]),
    Document {
        kind: String,
        id: String,
        json: Option<String>,
        create: bool,
    },
}

impl Write {
    fn of(commit: &Commit) -> Result<(Vec<Write>, Vec<String>), StoreError> {
        let mut writes = Vec::new();
        let mut notices = Vec::new();
        for write in commit.key_writes() {
            match write {
                KeyWrite::Put(record) => {
                    let id = record.id;
                    let json = serde_json::to_string(record)
                        .map_err(|error| StoreError::Record { key: id, error })?;
                    let retired = record.retired_secret.map(|retired| retired.token_hash);
                    let secrets = core::iter::once(record.token_hash)
                        .chain(retired)
                        .map(|hash| *hash.as_bytes())
                        .collect();
                    writes.push(Write::Key {
                        id: *id.as_bytes(),
                        json,
                        secrets,
                    });
                    notices.push(format!("key:{id}"));
                }
                KeyWrite::Delete(id) => {
                    writes.push(Write::DeleteKey(*id.as_bytes()));
                    notices.push(format!("key:{id}"));
                }
            }
        }
        for write in commit.document_writes() {
            let (kind, id, json, create) = match write {
                DocumentWrite::Put { kind, id, json } => (kind, id, Some(json.clone()), false),
                DocumentWrite::Create { kind, id, json } => (kind, id, Some(json.clone()), true),
                DocumentWrite::Delete { kind, id } => (kind, id, None, false),
            };
            notices.push(format!("doc:{kind}/{id}"));
            writes.push(Write::Document {
                kind: kind.clone(),
                id: id.clone(),
                json,
                create,
            });
        }
        Ok((writes, notices))
    }
}

async fn commit_writes(
    pool: Arc<Pool>,
    writes: Vec<Write>,
    notices: Vec<String>,
) -> Result<(), StoreError> {
    let mut pooled = pool.get().await?;
    let tx = pooled.client()?.transaction().await?;
    for write in &writes {
        match write {
            Write::Key { id, json, secrets } => {
                let id = id.as_slice();
                // An upsert: replacing the row would delete, by cascade, its usage and limiter.
                tx.execute(
                    "INSERT INTO keys (id, record) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                    &[&id, json],
                )
                .await?;
                tx.execute("DELETE FROM secrets WHERE key_id = $1", &[&id])
                    .await?;
                for hash in secrets {
                    let added = tx
                        .execute(
                            "INSERT INTO secrets (hash, key_id) VALUES ($1, $2)
                             ON CONFLICT (hash) DO NOTHING",
                            &[&hash.as_slice(), &id],
                        )
                        .await?;
                    if added == 0 {
                        return Err(StoreError::DuplicateToken(rows::key_id(id)?));
                    }
                }
            }
            Write::DeleteKey(id) => {
                tx.execute("DELETE FROM keys WHERE id = $1", &[&id.as_slice()])
                    .await?;
            }
            Write::Document {
                kind,
                id,
                json,
                create: true,
            } => {
                let created = tx
                    .execute(
                        "INSERT INTO documents (kind, id, json) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[kind, id, json],
                    )
                    .await?;
                if created == 0 {
                    return Err(StoreError::DocumentExists {
                        kind: kind.clone(),
                        id: id.clone(),
                    });
                }
            }
            Write::Document { kind, id, json, .. } => match json {
                Some(json) => {
                    tx.execute(
                        "INSERT INTO documents (kind, id, json) VALUES ($1, $2, $3)
                         ON CONFLICT (kind, id) DO UPDATE SET json = excluded.json",
                        &[kind, id, json],
                    )
                    .await?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM documents WHERE kind = $1 AND id = $2",
                        &[kind, id],
                    )
                    .await?;
                }
            },
        }
    }
    // Delivered when, and only if, the transaction commits. One round trip for all of them.
    tx.execute(
        "SELECT pg_notify($1, notice) FROM unnest($2::text[]) AS notice",
        &[&CHANNEL, &notices],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every key row, usage row and limiter row, read in one snapshot.
struct Loaded {
    keys: Vec<Row>,
    usage: Vec<Row>,
    limits: Vec<Row>,
}

async fn load_all(pool: Arc<Pool>) -> Result<Loaded, StoreError> {
    let mut pooled = pool.get().await?;
    let tx = pooled
        .client()?
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let usage = tx.query("SELECT key_id, usage FROM usage", &[]).await?;
    let limits = tx.query("SELECT key_id, tat FROM rate_limits", &[]).await?;
    let keys = tx.query("SELECT id, record FROM keys", &[]).await?;
    tx.commit().await?;
    Ok(Loaded {
        keys,
        usage,
        limits,
    })
}

fn row_key_id(row: &Row) -> Result<KeyId, StoreError> {
    rows::key_id(row.try_get::<_, &[u8]>(0)?)
}

impl KeyStore for PgStore {
    fn load_keys(
        &self,
        visit: &mut dyn FnMut(StoredKey) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let loaded = self.block(load_all)?;
        let mut usage = std::collections::HashMap::with_capacity(loaded.usage.len());
        for row in &loaded.usage {
            let id = row_key_id(row)?;
            usage.insert(id, rows::usage(id, row.try_get(1)?)?);
        }
        let mut limits = std::collections::HashMap::with_capacity(loaded.limits.len());
        for row in &loaded.limits {
            let id = row_key_id(row)?;
            limits.insert(id, rows::rate_limit_state(id, row.try_get(1)?)?);
        }
        for row in &loaded.keys {
            let id = row_key_id(row)?;
            let record = rows::record(id, row.try_get(1)?)?;
            let state = KeyState {
                usage: usage.remove(&id).unwrap_or_default(),
                rate_limit: limits.remove(&id).unwrap_or_default(),
            };
            visit(StoredKey { record, state })?;
        }
        Ok(())
    }

    fn load_key(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        let row = self.block(move |pool| async move {
            let client = pool.get().await?;
            Ok(client
                .query_opt(
                    "SELECT k.record, u.usage, r.tat FROM keys AS k
                     LEFT JOIN usage AS u ON u.key_id = k.id
                     LEFT JOIN rate_limits AS r ON r.key_id = k.id
                     WHERE k.id = $1",
                    &[&id.as_bytes().as_slice()],
                )
                .await?)
        })?;
        let Some(row) = row else { return Ok(None) };
        let record = rows::record(id, row.try_get(0)?)?;
        let usage = match row.try_get::<_, Option<&str>>(1)? {
            Some(text) => rows::usage(id, text)?,
            None => Usage::default(),
        };
        let rate_limit = match row.try_get::<_, Option<i64>>(2)? {
            Some(tat) => rows::rate_limit_state(id, tat)?,
            None => RateLimitState::default(),
        };
        Ok(Some(StoredKey {
            record,
            state: KeyState { usage, rate_limit },
        }))
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let (writes, notices) = Write::of(commit)?;
        self.block(move |pool| commit_writes(pool, writes, notices))
    }

    fn add_usage(&self, deltas: &[(KeyId, Usage)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut deltas = deltas.to_vec();
        // One order for every replica: two flushes locking the same rows cannot deadlock.
        deltas.sort_unstable_by_key(|(id, _)| *id);
        let empty = rows::usage_text(KeyId::from_bytes([0; 16]), &Usage::default())?;
        self.block(move |pool| async move {
            let mut pooled = pool.get().await?;
            let tx = pooled.client()?.transaction().await?;
            for (id, delta) in &deltas {
                let key = id.as_bytes().as_slice();
                // A row to lock, unless the key is gone (its delta is then dropped).
                tx.execute(
                    "INSERT INTO usage (key_id, usage)
                     SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM keys WHERE id = $1)
                     ON CONFLICT (key_id) DO NOTHING",
                    &[&key, &empty],
                )
                .await?;
                let Some(row) = tx
                    .query_opt(
                        "SELECT usage FROM usage WHERE key_id = $1 FOR UPDATE",
                        &[&key],
                    )
                    .await?
                else {
                    continue;
                };
                // Read, add, write under the row lock: no other replica's flush comes between.
                let mut total = rows::usage(*id, row.try_get(0)?)?;
                total.absorb(delta);
                tx.execute(
                    "UPDATE usage SET usage = $2 WHERE key_id = $1",
                    &[&key, &rows::usage_text(*id, &total)?],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn save_rate_limits(&self, states: &[(KeyId, RateLimitState)]) -> Result<(), StoreError> {
        let (ids, tats): (Vec<Vec<u8>>, Vec<i64>) = states
            .iter()
            .filter_map(|(id, state)| Some((id.as_bytes().to_vec(), state.tat()?.unix_micros())))
            .unzip();
        if ids.is_empty() {
            return Ok(());
        }
        self.block(move |pool| async move {
            let client = pool.get().await?;
            client
                .execute(
                    "INSERT INTO rate_limits (key_id, tat)
                     SELECT s.id, s.tat FROM unnest($1::bytea[], $2::int8[]) AS s (id, tat)
                     WHERE EXISTS (SELECT 1 FROM keys WHERE id = s.id)
                     ON CONFLICT (key_id) DO UPDATE
                     SET tat = GREATEST(rate_limits.tat, excluded.tat)",
                    &[&ids, &tats],
                )
                .await?;
            Ok(())
        })
    }

    fn load_documents(&self, kind: &str) -> Result<Vec<Document>, StoreError> {
        let kind = kind.to_owned();
        self.block(move |pool| async move {
            let client = pool.get().await?;
            let rows = client
                .query(
                    "SELECT id, json FROM documents WHERE kind = $1 ORDER BY id",
                    &[&kind],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(Document {
                        kind: kind.clone(),
                        id: row.try_get(0)?,
                        json: row.try_get(1)?,
                    })
                })
                .collect()
        })
    }
}

/// What a [`PgListener`] hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A commit wrote or deleted this key: reload it ([`KeyStore::load_key`]).
    Key(KeyId),
    /// A commit wrote or deleted this document.
    Document {
        /// Its kind.
        kind: String,
        /// Its id.
        id: String,
    },
    /// The listener (re)connected, or notices were lost: changes may have been missed, so reload
    /// everything. Every change committed after this notice comes as its own notice.
    Resync,
}

impl Notice {
    fn parse(payload: &str) -> Option<Self> {
        if let Some(id) = payload.strip_prefix("key:") {
            return id.parse().ok().map(Notice::Key);
        }
        let (kind, id) = payload.strip_prefix("doc:")?.split_once('/')?;
        Some(Notice::Document {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// How many notices wait for a slow consumer before the listener drops them and asks for a
/// [`Notice::Resync`] instead.
const NOTICE_BUFFER: usize = 4_096;

/// How often a listening connection proves it is alive. A connection that does not answer
/// within the store's timeout is dropped and replaced, followed by a [`Notice::Resync`].
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Changes committed to a [`PgStore`] by any replica, as they commit. Created by
/// [`PgStore::listen`]; stops listening when dropped.
#[derive(Debug)]
pub struct PgListener {
    notices: mpsc::Receiver<Notice>,
    task: tokio::task::JoinHandle<()>,
}

impl PgListener {
    /// The next notice; `None` once the store is gone. Usable from any tokio runtime.
    pub async fn recv(&mut self) -> Option<Notice> {
        self.notices.recv().await
    }

    /// A notice that is already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Notice> {
        self.notices.try_recv().ok()
    }
}

impl Drop for PgListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens, reconnecting after every lost connection, until the [`PgListener`] is dropped.
async fn listen(config: Config, notices: mpsc::Sender<Notice>, retry: Duration, timeout: Duration) {
    let mut lost = false;
    loop {
        listen_once(&config, &notices, &mut lost, timeout).await;
        if notices.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// One connection's worth of listening: returns when it is lost.
async fn listen_once(
    config: &Config,
    notices: &mpsc::Sender<Notice>,
    lost: &mut bool,
    timeout: Duration,
) {
    let Ok(Ok((client, mut connection))) =
        tokio::time::timeout(timeout, config.connect(NoTls)).await
    else {
        return;
    };
    let (payloads, mut received) = mpsc::unbounded_channel();
    // The connection must be polled for anything to happen, the LISTEN below included.
    let driver = tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if payloads.send(notification.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let statement = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&statement);
    if !matches!(tokio::time::timeout(timeout, listening).await, Ok(Ok(()))) {
        driver.abort();
        return;
    }
    // Listening before the resync: a change committed from now on is noticed, and one committed
    // before is in the reload.
    *lost = true;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        if *lost && deliver(notices, Notice::Resync) {
            *lost = false;
        }
        tokio::select! {
            payload = received.recv() => {
                let Some(payload) = payload else { break };
                if let Some(notice) = Notice::parse(&payload)
                    && !deliver(notices, notice)
                {
                    *lost = true;
                }
            }
            _ = heartbeat.tick() => {
                let alive = tokio::time::timeout(timeout, client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    break;
                }
            }
            () = notices.closed() => break,
        }
    }
    driver.abort();
    // The next connection starts with a resync.
    *lost = true;
}

/// Hands a notice over without waiting; false when the consumer is too far behind (or gone).
fn deliver(notices: &mpsc::Sender<Notice>, notice: Notice) -> bool {
    notices.try_send(notice).is_ok()
}
