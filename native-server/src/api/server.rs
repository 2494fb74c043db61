//! The connections under warp's routes: hyper's HTTP/1.1 (and HTTP/2 with prior knowledge,
//! as warp serves) driven over a tokio listener, so that the server can bound what a client
//! holds:
//!
//! * **header-read timeout** — a request head (request line and headers) must arrive within
//!   `header_read_timeout` of its first byte, or of the accept for a connection's first
//!   request; a client that stalls in the middle of a head is closed;
//! * **idle timeout** — a keep-alive connection with no request in flight is closed after
//!   `idle_timeout` without a new request starting. A request is in flight from its head until
//!   its response has been written, so a live change-feed long-poll (waiting up to 60 s for a
//!   change) never counts as idle. A client that stops reading its answer (the socket stays
//!   full) is closed after the same time;
//! * **connection cap** — at most `max_connections` open connections. The excess is
//!   **refused**: accepted, answered `503 too_many_connections` (with `Connection: close` and
//!   `Retry-After: 1`) and closed at once, so clients fail fast with a clear answer instead of
//!   waiting in a queue they cannot see;
//! * **bounded shutdown** — when the shutdown future resolves, the listener closes, idle
//!   connections (and those in the middle of a head) close at once, the others finish their
//!   request in flight and close; after `shutdown_timeout` whatever is left is dropped (each
//!   dropped request cancels its work: a search stops at its next segment).
//!
//! A connection task watches its connection's state (`Track`): the socket reads (a head
//! starts with the first byte read while no request is in flight), requests starting (the
//! service is called) and ending (the response body is dropped once written). Closing a
//! connection with no request in flight loses nothing.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use warp::http::{Request, Response};
use warp::hyper::body::{Body, Frame, Incoming, SizeHint};

use super::AppState;

/// Default time a request head may take to arrive.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time the requests in flight get to finish once a shutdown begins.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors kept for everything but connections (data files, WAL, listener, logs)
/// when the open-file limit lowers the connection cap.
const RESERVED_FDS: u64 = 256;
/// Refusals being written at once; past this, excess connections are closed without an answer.
const MAX_REFUSING: usize = 64;

/// Connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnConfig {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does) and returns the
/// connection cap that fits under it: `wanted`, or fewer (with a warning) when the limit
/// leaves less than `wanted` + a reserve for the data files.
pub fn fit_open_file_limit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write to / read from a valid, owned rlimit struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return wanted;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
        let soft = lim.rlim_cur as u64;
        let room = soft.saturating_sub(RESERVED_FDS).max(16) as usize;
        if room < wanted {
            tracing::warn!(
                max_connections = room,
                wanted,
                open_file_limit = soft,
                "the open-file limit (ulimit -n) lowers the connection cap"
            );
            return room;
        }
        wanted
    }
    #[cfg(not(unix))]
    wanted
}

/// Open connections, and a wake-up for each one that closes.
struct Conns {
    open: AtomicUsize,
    closed: Notify,
    gauge: prometheus::IntGauge,
}

/// An open connection's place under the cap; given back on drop.
struct Slot(Arc<Conns>);

impl Conns {
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn enter(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.gauge.inc();
        Slot(self.clone())
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            let mut closed = pin!(closed);
            closed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.gauge.dec();
        self.0.closed.notify_waiters();
    }
}

/// What one connection is doing, as its task sees it.
struct Track {
    epoch: Instant,
    /// Requests whose response is not yet written.
    in_flight: AtomicUsize,
    /// Nanoseconds after `epoch` when the last request ended.
    idle_since: AtomicU64,
    /// 1 + nanoseconds after `epoch` when the head being read began; 0 while none is.
    head_started: AtomicU64,
    /// Requests started on the connection.
    requests: AtomicU64,
    /// 1 + nanoseconds after `epoch` when a write found the socket full; 0 once one went out.
    write_stalled: AtomicU64,
    wake: Notify,
}

/// Why a connection's task closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    HeaderTimeout,
    Idle,
    WriteStalled,
}

impl Expired {
    fn as_str(self) -> &'static str {
        match self {
            Expired::HeaderTimeout => "header_timeout",
            Expired::Idle => "idle",
            Expired::WriteStalled => "write_stalled",
        }
    }
}

impl Track {
    /// A connection just accepted: its first head is timed from now.
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            write_stalled: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Bytes arrived: with no request in flight, they begin a head.
    fn on_read(&self) {
        if self.in_flight() == 0 && self.head_started.load(Ordering::SeqCst) == 0 {
            self.head_started.store(self.nanos() + 1, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    /// A write went out, or found the socket full (the client is not reading).
    fn on_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => {
                if self.write_stalled.load(Ordering::SeqCst) == 0 {
                    self.write_stalled.store(self.nanos() + 1, Ordering::SeqCst);
                    self.wake.notify_one();
                }
            }
            Poll::Ready(Ok(n)) if *n > 0 => self.write_stalled.store(0, Ordering::SeqCst),
            Poll::Ready(_) => {}
        }
    }

    /// No request has started on the connection yet (nothing was ever answered on it).
    fn fresh(&self) -> bool {
        self.requests.load(Ordering::SeqCst) == 0
    }

    fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn request_ended(&self) {
        self.idle_since.store(self.nanos(), Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// When the connection is to be closed if nothing happens first, and why: an answer the
    /// client has not read for the idle timeout, a head not complete in time, or idleness;
    /// `None` while a request is in flight and its answer is not stuck.
    fn deadline(&self, cfg: &ConnConfig) -> Option<(Instant, Expired)> {
        match self.write_stalled.load(Ordering::SeqCst) {
            0 => {}
            since => return Some((self.at(since - 1) + cfg.idle_timeout, Expired::WriteStalled)),
        }
        if self.in_flight() > 0 {
            return None;
        }
        match self.head_started.load(Ordering::SeqCst) {
            0 => Some((
                self.at(self.idle_since.load(Ordering::SeqCst)) + cfg.idle_timeout,
                Expired::Idle,
            )),
            started => Some((
                self.at(started - 1) + cfg.header_read_timeout,
                Expired::HeaderTimeout,
            )),
        }
    }
}

/// The socket, telling its `Track` when bytes arrive and when writes stall.
struct Watched {
    io: TcpStream,
    track: Arc<Track>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.track.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track.on_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track.on_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request in flight: from the service call until its response body is dropped (written,
/// or the connection gone).
struct InFlight(Arc<Track>);

impl InFlight {
    fn start(track: &Arc<Track>) -> Self {
        track.request_started();
        Self(track.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that holds its request's [`InFlight`].
struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The routes' service, counting requests in flight on the connection.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    track: Arc<Track>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> warp::hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: warp::hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Body + Unpin + Send + 'static,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.track);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// What the accept loop tells the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serve,
    /// Close when no request is in flight; finish the ones that are.
    Drain,
    /// Close now.
    Drop,
}

/// Serves `listener` until `shutdown` resolves, then shuts down within the configured bound.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let cfg = state.conn.clone();
    let service = TowerToHyperService::new(warp::service(super::routes(state.clone())));
    let conns = Arc::new(Conns {
        open: AtomicUsize::new(0),
        closed: Notify::new(),
        gauge: state.metrics.connections_gauge(),
    });
    let refusing = Arc::new(AtomicUsize::new(0));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serve);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        if conns.open() >= cfg.max_connections {
            state.metrics.connection_refused();
            refuse(stream, cfg.max_connections, &refusing);
            continue;
        }
        let slot = conns.enter();
        tokio::spawn(connection(
            stream,
            service.clone(),
            cfg.clone(),
            state.clone(),
            phase_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    state.stopping.send_replace(true);
    phase_tx.send_replace(Phase::Drain);
    let open = conns.open();
    if open > 0 {
        tracing::info!(
            connections = open,
            timeout_s = cfg.shutdown_timeout.as_secs_f64(),
            "stopped accepting: finishing the requests in flight"
        );
    }
    if tokio::time::timeout(cfg.shutdown_timeout, conns.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = conns.open(),
            timeout_s = cfg.shutdown_timeout.as_secs_f64(),
            "shutdown timeout: dropping the requests still in flight"
        );
        phase_tx.send_replace(Phase::Drop);
        let _ = tokio::time::timeout(Duration::from_secs(5), conns.all_closed()).await;
    }
}

/// As warp does: connection errors are the client's; anything else (out of file descriptors)
/// is logged and the loop pauses so as not to spin.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection past the cap with 503 and closes it. The request is not read; what
/// the client sends is drained for up to a second so that closing does not reset the
/// connection before the answer is read.
fn refuse(mut stream: TcpStream, max: usize, refusing: &Arc<AtomicUsize>) {
    if refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let body = format!(
            r#"{{"error":{{"code":"too_many_connections","message":"the server has {max} open connections, its limit (--max-connections): retry shortly"}}}}"#
        );
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < 64 << 10 {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
        refusing.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Serves one connection, closing it on the timeouts and at shutdown.
async fn connection<S, B>(
    stream: TcpStream,
    service: S,
    cfg: ConnConfig,
    state: Arc<AppState>,
    mut phase: watch::Receiver<Phase>,
    _slot: Slot,
) where
    S: warp::hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let track = Arc::new(Track::new());
    let io = TokioIo::new(Watched {
        io: stream,
        track: track.clone(),
    });
    let service = Counted {
        inner: service,
        track: track.clone(),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header-read timer runs from the moment it waits for a head (also between
    // requests): set past what the idle and header timeouts allow together, it only backs
    // them up.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.idle_timeout + cfg.header_read_timeout + Duration::from_secs(1));
    let conn = builder.serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut draining = false;
    let closed_by: Option<&'static str> = loop {
        let deadline = track.deadline(&cfg);
        let sleep_until = deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            |(at, _)| at.into(),
        );
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break None;
            }
            _ = track.wake.notified() => {}
            changed = phase.changed() => {
                let now = if changed.is_err() { Phase::Drop } else { *phase.borrow_and_update() };
                match now {
                    Phase::Serve => {}
                    // hyper closes an idle connection at once and finishes (writes) a request
                    // in flight first; a connection that has not had a request yet has no
                    // answer to finish.
                    Phase::Drain if !draining => {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                        if track.in_flight() == 0 && track.fresh() {
                            break Some("shutdown");
                        }
                    }
                    Phase::Drain => {}
                    Phase::Drop => break Some("shutdown"),
                }
            }
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                if let Some((at, why)) = track.deadline(&cfg) {
                    if Instant::now() >= at {
                        break Some(why.as_str());
                    }
                }
            }
        }
    };
    if let Some(reason) = closed_by {
        if reason != "shutdown" {
            state.metrics.connection_closed(reason);
        }
        tracing::debug!(reason, "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_timed_by_what_it_is_doing() {
        let cfg = ConnConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ..ConnConfig::default()
        };
        let t = Track::new();
        let at = |d: Option<(Instant, Expired)>| d.map(|(at, why)| (at - t.epoch, why));
        // Accepted: the first head is due within the header-read timeout.
        assert!(t.fresh());
        assert_eq!(
            at(t.deadline(&cfg)),
            Some((cfg.header_read_timeout, Expired::HeaderTimeout))
        );
        // A request in flight (a long-poll, say) is never timed out.
        t.request_started();
        assert!(!t.fresh());
        assert_eq!(t.deadline(&cfg), None);
        t.on_read();
        assert_eq!(
            t.deadline(&cfg),
            None,
            "bytes of a body or a pipelined request"
        );
        // Answered: idle from then on, until the next head's first byte.
        t.request_ended();
        let (due, why) = t.deadline(&cfg).unwrap();
        assert_eq!(why, Expired::Idle);
        assert!(due >= t.epoch + cfg.idle_timeout);
        t.on_read();
        let (due2, why) = t.deadline(&cfg).unwrap();
        assert_eq!(why, Expired::HeaderTimeout);
        assert!(due2 < due, "a head is due sooner than the idle timeout");
        // An answer the client does not read is timed like idleness, in flight or not.
        t.request_started();
        t.on_write(&Poll::Pending);
        assert_eq!(t.deadline(&cfg).unwrap().1, Expired::WriteStalled);
        t.on_write(&Poll::Ready(Ok(10)));
        assert_eq!(t.deadline(&cfg), None);
    }
}
