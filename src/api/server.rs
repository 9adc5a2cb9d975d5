//! The HTTP server under the API: hyper's HTTP/1 connections with bounded header read time and
//! header size, caps on open connections that keep lookout within its file descriptors, and a
//! bounded drain at shutdown.
//!
//! A connection goes through two stages:
//! - **waiting**: accepted, nothing received yet. It costs a file descriptor and a small task,
//!   no HTTP machinery, and lasts at most `header_read_timeout`.
//! - **active**: it sent something, so hyper serves it (at most `max_connections` of them).
//!
//! When a cap is reached, the oldest connection that costs the least to lose makes room: a
//! waiting one, else an active one with no request in progress (between keep-alive requests or
//! writing out an answer). Only when every connection is in the middle of a request is the new
//! one refused (a `503` if the socket takes it). Silent connections cost an attacker nothing to
//! hold; refusing newcomers would let a few hundred of them lock out `/healthz` and Prometheus,
//! while closing the oldest silent one lets a client that sends its request at once (every real
//! client does) be served.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tower::ServiceExt;

use super::{Limits, every_minute};

/// Longest request head (request line and headers) read; longer ones get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// Read buffer per connection; hyper starts small and grows up to this.
const MAX_BUF_BYTES: usize = 64 * 1024;
/// File descriptors left to the rest of lookout (registries, Docker, compose, state, logs).
const FD_RESERVE: u64 = 256;

/// Connections the kernel queues for `accept`.
const ACCEPT_BACKLOG: i32 = 4096;

/// What a refused connection reads, when it reads anything.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in progress
/// finish for up to `limits.drain_timeout` and closes what is left.
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connections lookout has no room for wait in the kernel's accept queue rather than have
    // their SYN dropped (a 1 s retransmit for the client); tokio binds with a backlog of 1,024.
    // Listening again on a listening socket only changes its backlog (Linux caps it at
    // net.core.somaxconn).
    if let Err(e) = rustix::net::listen(&listener, ACCEPT_BACKLOG) {
        tracing::debug!(error = %e, "cannot raise the accept backlog");
    }
    let slots = Slots::new(&limits, fd_limit());
    tracing::info!(
        max_connections = slots.max_active,
        max_open = slots.max_open,
        header_read_timeout = ?limits.header_read_timeout,
        "HTTP server limits"
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_BUF_BYTES);
    let (stopping_tx, stopping) = watch::channel(false);
    // One permit per open socket, released only when its task has dropped the socket: a
    // connection told to make room still holds its descriptor until then, so counting entries
    // alone lets a fast churn of newcomers overshoot the descriptor limit.
    let descriptors = Arc::new(Semaphore::new(slots.max_open));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let Some((slot, closed)) = slots.admit() else {
            refuse(&stream);
            continue;
        };
        // Admitting may have told an older connection to close; its socket counts until its
        // task has dropped it, and no other connection is accepted meanwhile.
        let descriptor = match descriptors.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = descriptors.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed
                },
            },
        };
        let connection = Connection {
            _descriptor: descriptor,
            slot,
            closed,
            stopping: stopping.clone(),
            http: http.clone(),
            router: router.clone(),
            first_byte_timeout: limits.header_read_timeout,
            peer,
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    if tokio::time::timeout(limits.drain_timeout, slots.all_closed())
        .await
        .is_err()
    {
        let left = slots.close_all();
        tracing::warn!(
            connections = left,
            "HTTP connections still busy after {:?}: closed",
            limits.drain_timeout
        );
    }
    Ok(())
}

/// One accepted connection and what it needs to be served.
struct Connection {
    /// Its socket's place under the descriptor cap, given back when the connection ends.
    _descriptor: OwnedSemaphorePermit,
    slot: Slot,
    /// Fires when the connection must make room for a newer one.
    closed: oneshot::Receiver<()>,
    stopping: watch::Receiver<bool>,
    http: hyper::server::conn::http1::Builder,
    router: Router,
    first_byte_timeout: std::time::Duration,
    /// Who connected (the page trusts `X-Forwarded-Proto` from configured proxies only).
    peer: std::net::SocketAddr,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        // Waiting: no HTTP machinery until the client sends something. (`peek`, not
        // `readable`: tokio reports a new socket readable once before it has looked.)
        let mut first = [0u8; 1];
        let sent = tokio::select! {
            peeked = tokio::time::timeout(self.first_byte_timeout, stream.peek(&mut first)) => peeked,
            _ = &mut self.closed => return,
            () = stopped(&mut self.stopping) => return,
        };
        if !matches!(sent, Ok(Ok(1..))) {
            return;
        }
        if !self.slot.activate() {
            refuse(&stream);
            return;
        }
        let busy = self.slot.busy.clone();
        let router = self.router;
        let peer = axum::extract::ConnectInfo(self.peer);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let request = Busy::enter(&busy);
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(peer);
            let answer = router.clone().oneshot(req);
            async move {
                let answer = answer.await;
                drop(request);
                answer
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => Some(ended),
            _ = &mut self.closed => None,
            () = stopped(&mut self.stopping) => {
                // Finish the request in progress, then close; the drain timeout bounds it.
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    ended = conn.as_mut() => Some(ended),
                    _ = &mut self.closed => None,
                }
            }
        };
        match ended {
            Some(Err(e)) => tracing::debug!(error = %e, "HTTP connection ended"),
            Some(Ok(())) => {}
            None => tracing::debug!("HTTP connection closed to make room"),
        }
    }
}

/// Resolves once the server is shutting down.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The file descriptor soft limit, if there is one.
fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Sends a 503 if the socket takes it without waiting; the caller then closes it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
}

/// `accept` failed: a connection reset before it was accepted is nothing; anything else (out of
/// file descriptors) is waited out briefly instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    if every_minute(&LAST) {
        tracing::error!(error = %e, "cannot accept HTTP connections");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// Open connections, oldest first, and the caps.
struct Slots {
    /// Active connections at most.
    max_active: usize,
    /// Open connections (waiting and active) at most.
    max_open: usize,
    open: Mutex<Open>,
    emptied: Notify,
    evicted: AtomicU64,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    active: usize,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    /// `None` while waiting; requests in progress once active.
    busy: Option<Arc<AtomicUsize>>,
    close: oneshot::Sender<()>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    id: u64,
    /// Requests in progress on this connection.
    busy: Arc<AtomicUsize>,
    slots: Arc<Slots>,
}

impl Slots {
    /// The caps of `limits`, within `fd_limit` less what the rest of lookout needs.
    fn new(limits: &Limits, fd_limit: Option<u64>) -> Arc<Self> {
        let budget = fd_limit.map_or(usize::MAX, |n| {
            usize::try_from(n.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX)
        });
        let max_open = limits
            .max_connections
            .saturating_add(limits.max_waiting)
            .min(budget)
            .max(1);
        Arc::new(Self {
            max_active: limits.max_connections.min(max_open).max(1),
            max_open,
            open: Mutex::new(Open::default()),
            emptied: Notify::new(),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a new, waiting connection and the signal that it is to close; `None` when
    /// every open connection is in the middle of a request.
    fn admit(self: &Arc<Self>) -> Option<(Slot, oneshot::Receiver<()>)> {
        let mut open = self.lock();
        if open.by_age.len() >= self.max_open {
            let waiting = open.oldest(|e| e.busy.is_none());
            let victim = waiting.or_else(|| open.oldest(Entry::idle));
            if !self.make_room(&mut open, victim) {
                return None;
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let (close, closed) = oneshot::channel();
        open.by_age.insert(id, Entry { busy: None, close });
        let slot = Slot {
            id,
            busy: Arc::new(AtomicUsize::new(0)),
            slots: self.clone(),
        };
        Some((slot, closed))
    }

    /// Closes `victim` (counted, and said once a minute); `false` when there is none.
    fn make_room(&self, open: &mut Open, victim: Option<u64>) -> bool {
        match victim.and_then(|id| open.remove(id)) {
            Some(entry) => {
                let _ = entry.close.send(());
                self.evicted.fetch_add(1, Ordering::Relaxed);
                self.warn();
                true
            }
            None => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.warn();
                false
            }
        }
    }

    /// Says, at most once a minute, that a cap is being hit.
    fn warn(&self) {
        if every_minute(&self.last_warning) {
            tracing::warn!(
                max_connections = self.max_active,
                max_open = self.max_open,
                closed_to_make_room = self.evicted.swap(0, Ordering::Relaxed),
                refused = self.refused.swap(0, Ordering::Relaxed),
                "HTTP connection limit reached: closing the oldest silent or idle connections for new ones, refusing new ones when all are busy (counts since the last warning)"
            );
        }
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.lock().by_age.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Closes every connection; returns how many there were.
    fn close_all(&self) -> usize {
        let mut open = self.lock();
        let all = std::mem::take(&mut open.by_age);
        open.active = 0;
        drop(open);
        let n = all.len();
        for entry in all.into_values() {
            let _ = entry.close.send(());
        }
        n
    }
}

impl Open {
    fn oldest(&self, pick: impl Fn(&Entry) -> bool) -> Option<u64> {
        self.by_age.iter().find(|(_, e)| pick(e)).map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.by_age.remove(&id)?;
        if entry.busy.is_some() {
            self.active -= 1;
        }
        Some(entry)
    }
}

impl Entry {
    /// Active with no request in progress.
    fn idle(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Acquire) == 0)
    }
}

impl Slot {
    /// The connection sent something: it becomes active, closing the oldest idle active one at
    /// the cap. `false` when it was closed meanwhile or every active connection is busy.
    fn activate(&self) -> bool {
        let slots = &self.slots;
        let mut open = slots.lock();
        if !open.by_age.contains_key(&self.id) {
            return false;
        }
        if open.active >= slots.max_active {
            let victim = open.oldest(Entry::idle);
            if !slots.make_room(&mut open, victim) {
                return false;
            }
        }
        open.active += 1;
        if let Some(entry) = open.by_age.get_mut(&self.id) {
            entry.busy = Some(self.busy.clone());
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.remove(self.id);
        if open.by_age.is_empty() {
            self.slots.emptied.notify_waiters();
        }
    }
}

/// A request in progress on a connection, for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::AcqRel);
        Self(busy.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(active: usize, waiting: usize) -> Arc<Slots> {
        let limits = Limits {
            max_connections: active,
            max_waiting: waiting,
            ..Limits::default()
        };
        Slots::new(&limits, None)
    }

    #[test]
    fn waiting_connections_make_room_first_then_idle_ones_never_busy_ones() {
        let slots = slots(2, 1);
        let (a, mut a_closed) = slots.admit().unwrap();
        let (b, mut b_closed) = slots.admit().unwrap();
        let (c, mut c_closed) = slots.admit().unwrap();
        assert!(a.activate() && b.activate());
        let busy_a = Busy::enter(&a.busy);
        // Three open, the cap: the waiting one (c) goes first, though it is the newest.
        let (d, _d_closed) = slots.admit().unwrap();
        assert_eq!(c_closed.try_recv(), Ok(()));
        assert!(!c.activate(), "a closed connection does not come back");
        // d becomes active: b is idle and makes room; a is busy and stays.
        assert!(d.activate());
        assert_eq!(b_closed.try_recv(), Ok(()));
        assert!(a_closed.try_recv().is_err());
        let busy_d = Busy::enter(&d.busy);
        let (e, _e_closed) = slots.admit().expect("room: b and c left");
        assert!(!e.activate(), "a and d are busy: no active place");
        drop((busy_a, busy_d));
    }

    #[test]
    fn when_every_connection_is_busy_new_ones_are_refused() {
        let slots = slots(1, 0);
        let (a, _) = slots.admit().unwrap();
        assert!(a.activate());
        let busy = Busy::enter(&a.busy);
        assert!(slots.admit().is_none());
        drop(busy);
        assert!(slots.admit().is_some(), "idle again: it makes room");
    }

    #[test]
    fn closed_connections_free_their_place() {
        let slots = slots(1, 1);
        let (a, _) = slots.admit().unwrap();
        assert!(a.activate());
        let (b, _) = slots.admit().unwrap();
        assert_eq!(slots.lock().active, 1);
        drop(a);
        assert_eq!(slots.lock().active, 0);
        assert!(b.activate());
        drop(b);
        assert!(slots.lock().by_age.is_empty());
        let (_c, mut c_closed) = slots.admit().unwrap();
        assert_eq!(slots.close_all(), 1);
        assert_eq!(c_closed.try_recv(), Ok(()));
    }

    #[test]
    fn the_caps_stay_within_the_descriptor_limit() {
        let limits = Limits::default();
        let systemd_default = Slots::new(&limits, Some(1024));
        assert_eq!(systemd_default.max_open, 1024 - 256);
        assert_eq!(systemd_default.max_active, 512);
        let unit = Slots::new(&limits, Some(65536));
        assert_eq!(
            (unit.max_active, unit.max_open),
            (512, 512 + limits.max_waiting)
        );
        let tiny = Slots::new(&limits, Some(100));
        assert_eq!((tiny.max_active, tiny.max_open), (16, 16));
    }
}
