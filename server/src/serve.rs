//! Serving connections: our own accept loop over hyper's HTTP/1 connections, because
//! `axum::serve` exposes no header-read timeout, idle timeout or connection cap.
//!
//! - At most `max_connections` connections are served at once (a semaphore); past it, new ones
//!   wait in the kernel's listen backlog and a warning is logged (at most every 10 s).
//! - hyper closes a connection whose request head is not complete within
//!   `header_read_timeout` of starting to wait for it (a slowloris), also between requests.
//! - A connection serving no request and moving no byte for `idle_timeout` is asked to close
//!   (hyper then finishes any response it is writing); one still stuck one more `idle_timeout`
//!   later (a client that stopped reading) is dropped.
//! - On shutdown the listener closes at once, every connection finishes the request it is
//!   serving and closes, and [`serve`] returns when all have, or after `shutdown_grace`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use keygate::axum::ClientAddress;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::reply::MAX_BUF;
use crate::state::{AppState, PURGE_BATCH, now};

/// After a failed `accept` (out of file descriptors, say), wait this long rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The connection-limit warning is logged at most this often.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(10);
/// One purge sweep takes at most this many steps of [`PURGE_BATCH`] keys.
const MAX_PURGE_STEPS: usize = 10_000;
/// How often usage and rate-limiter states go to the store: what a crash can lose at most.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `shutdown` completes, then drains (see the module docs).
/// Also runs the periodic purge of revoked and expired keys, and the flush of usage and
/// rate-limiter states to the store every 2 s and once more after the drain.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let http = state.config.http.clone();
    let app = crate::router(state.clone());
    let max = http.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    let purge = tokio::spawn(purge_keys(state.clone(), stopped.clone()));
    let flush = tokio::spawn(flush_usage(state.clone(), stopped.clone()));
    let changes = crate::state::lock(&state.changes).take();
    let follow = changes.map(|changes| {
        tokio::spawn(crate::replica::follow(
            state.clone(),
            changes,
            stopped.clone(),
        ))
    });
    let mut shutdown = pin!(shutdown);
    let mut warned_at: Option<Instant> = None;
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_at.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached: new connections wait in the listen backlog"
                    );
                    warned_at = Some(Instant::now());
                }
                tokio::select! {
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            app.clone(),
            http.clone(),
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    let open = max.saturating_sub(permits.available_permits());
    tracing::info!(
        open_connections = open,
        "shutting down: draining connections"
    );
    // Nobody may be listening any more; that only means there is nothing left to tell.
    stop.send_replace(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(http.shutdown_grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            open_connections = max.saturating_sub(permits.available_permits()),
            "shutdown grace period over: closing the remaining connections"
        ),
    }
    purge.abort();
    flush.abort();
    if let Some(follow) = follow {
        follow.abort();
    }
    // The usage counted during the drain too.
    flush_now(&state);
    Ok(())
}

/// Every [`FLUSH_INTERVAL`], moves usage and rate-limiter states to the store.
async fn flush_usage(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        // SQLite work: off the async workers, so a slow disk stalls no request.
        let flushing = state.clone();
        if tokio::task::spawn_blocking(move || flush_now(&flushing))
            .await
            .is_err()
        {
            tracing::warn!("the usage flush task failed");
        }
    }
}

/// One flush; a failure is logged and the counts are kept for the next one.
fn flush_now(state: &AppState) {
    if let Err(error) = state.flush_usage() {
        tracing::warn!(%error, "cannot flush usage to the store; retrying at the next flush");
    }
}

/// One connection, until it ends: hyper's HTTP/1 with the header-read timeout, plus the idle
/// timeout and the shutdown signal.
async fn connection(
    stream: TcpStream,
    app: Router,
    http: HttpConfig,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Small JSON responses go out at once instead of waiting to be coalesced; failing to set it
    // only costs latency.
    stream.set_nodelay(true).ok();
    // The TCP peer: every request's client address unless a trusted proxy header names it.
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let service = Counted {
        inner: app,
        activity: Arc::clone(&activity),
        peer,
        trusted_proxy_header: http.trusted_proxy_header.clone(),
    };
    let mut conn = pin!(builder.serve_connection(io, TowerToHyperService::new(service)));
    let mut closing = false;
    // Ends with the connection: each turn is one event (it ended, an idle deadline passed,
    // shutdown began). After `closing` is set, an idle deadline ends the loop, so the number of
    // turns without a byte moved is bounded.
    loop {
        let idle_at = activity.last() + http.idle_timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection closed on error");
                }
                break;
            }
            () = tokio::time::sleep_until(idle_at.into()) => {
                if activity.is_idle(http.idle_timeout) {
                    if closing {
                        tracing::debug!("dropping a connection stuck after its close");
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stopped.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The router, counting the requests it is handling in the connection's [`Activity`], so that
/// a slow handler does not make its connection look idle.
#[derive(Debug, Clone)]
struct Counted {
    inner: Router,
    activity: Arc<Activity>,
    /// The connection's TCP peer address.
    peer: Option<std::net::IpAddr>,
    /// `--trusted-proxy-header`: where the client address comes from instead of `peer`.
    trusted_proxy_header: Option<HeaderName>,
}

/// The right-most address in `name`'s values (`X-Forwarded-For: client, proxy1, proxy2`): the one
/// the nearest proxy appended, the only one it vouches for. An entry with a port
/// (`1.2.3.4:5`, `[::1]:5`) counts too; anything else gives no address.
fn forwarded_address(headers: &HeaderMap, name: &HeaderName) -> Option<std::net::IpAddr> {
    let last = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let entry = last.rsplit(',').next()?.trim();
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

impl tower::Service<Request<Incoming>> for Counted {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready (each call clones it below).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        // Every request carries its client address to KeygateLayer, which refuses a key
        // restricted to other addresses and hands the address to the handlers' decisions.
        let address = match &self.trusted_proxy_header {
            Some(name) => forwarded_address(request.headers(), name),
            None => self.peer,
        };
        if let Some(address) = address {
            request.extensions_mut().insert(ClientAddress(address));
        }
        let busy = Busy::new(Arc::clone(&self.activity));
        let router = self.inner.clone();
        Box::pin(async move {
            let response = router.oneshot(request.map(Body::new)).await;
            drop(busy);
            response
        })
    }
}

/// One request being handled; dropped (also when its future is) when it is done.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// When a connection last moved a byte or finished a request, and how many it is handling.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    /// Serving nothing, and nothing moved for `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.last() + timeout <= Instant::now()
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that notes every byte read or written in its [`Activity`].
#[derive(Debug)]
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Every `purge_interval`, removes the keys revoked or expired for longer than the retention.
async fn purge_keys(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(state.config.purge_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Runs until shutdown; each turn is one tick.
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let mut removed = 0usize;
        // Batches, so that requests get the keys' lock between them.
        for _ in 0..MAX_PURGE_STEPS {
            let step = state.purge_step(now());
            removed = removed.saturating_add(step);
            if step < PURGE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "purged revoked and expired keys past their retention"
            );
        }
    }
}

/// Completes on SIGINT or SIGTERM (Ctrl-C elsewhere). The handlers are installed when this is
/// called, so a signal arriving any time after is caught; call it inside a Tokio runtime.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
