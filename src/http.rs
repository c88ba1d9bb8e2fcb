//! A minimal HTTP/1.1 server loop on hyper, shared by the exporter and the
//! simulator: accept, (optionally) TLS handshake, serve each connection on its
//! own task, drain on shutdown.
//!
//! Every connection is bounded ([`Limits`]): headers must arrive within
//! [`HEADER_READ_TIMEOUT`] (which is also the keep-alive idle timeout), a write
//! that makes no progress for [`WRITE_TIMEOUT`] ends the connection (a client
//! that pipelines requests and never reads), the read buffer is capped, and at
//! most [`Limits::max_connections`] are open: at the limit a new connection
//! evicts the oldest one that is not running a request (idle, waiting for
//! headers or for its client to read), and is refused when every open
//! connection is running one. [`Connections`] counts all of this for the
//! metrics page.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long in-flight requests get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Gives each new connection the TLS configuration to use. Asked once per
/// connection, so rotated certificates apply without a restart; `None` closes
/// the connection.
pub type TlsConfigSource = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// Longest a client may take to complete the TLS handshake (as long as hyper
/// waits for request headers).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a request's headers, counted from the connection's start
/// or the end of the previous response: also the keep-alive idle timeout.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a write may make no progress before the connection is closed: a
/// client that stops reading is dropped this long after its socket buffer filled.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default of `--web.max-connections` (Prometheus' own default for the same flag).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// hyper's read buffer (and so the largest request head) per connection; its
/// default, ~400 KiB, lets every pipelining client cost that much.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// Bounds on the connections of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (see the module documentation for who gives way).
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: DEFAULT_MAX_CONNECTIONS, header_read_timeout: HEADER_READ_TIMEOUT, write_timeout: WRITE_TIMEOUT }
    }
}

/// Counters of a server's connections, for the metrics page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: u64,
    /// Connections refused at the limit because every open one was running a request.
    pub rejected: u64,
    /// Connections closed at the limit to make room for a new one.
    pub evicted: u64,
    /// Connections closed because a write made no progress for the write timeout.
    pub write_timeouts: u64,
}

/// The open connections of one server, and its counters.
#[derive(Debug)]
pub struct Connections {
    limits: Limits,
    /// Open connections by accept order: the first idle one is the oldest.
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    rejected: AtomicU64,
    evicted: AtomicU64,
    write_timeouts: AtomicU64,
}

#[derive(Debug, Default)]
struct Conn {
    /// Requests whose handler is running on this connection.
    busy: AtomicUsize,
    evict: Notify,
}

/// A connection's place in [`Connections`], given back when dropped.
struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.lock().expect("connections lock").remove(&self.id);
    }
}

/// Marks a connection busy while a request's handler runs (cancelled or not).
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connections {
    /// No connection yet, under `limits`.
    pub fn new(limits: Limits) -> Self {
        Connections {
            limits,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.lock().expect("connections lock").len() as u64,
            rejected: self.rejected.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            write_timeouts: self.write_timeouts.load(Ordering::Relaxed),
        }
    }

    /// A place for a new connection: at the limit, the oldest connection not
    /// running a request is told to close; `None` when every one is.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= self.limits.max_connections.max(1) {
            let idle = open.iter().find(|(_, c)| c.busy.load(Ordering::SeqCst) == 0).map(|(id, _)| *id);
            let Some(id) = idle else {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            if let Some(victim) = open.remove(&id) {
                // A stored permit: the victim closes even if it is not waiting yet.
                victim.evict.notify_one();
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::default());
        open.insert(id, conn.clone());
        Some(Admitted { connections: self.clone(), id, conn })
    }
}

/// Whether hyper's error is a write that timed out ([`TimeoutStream`]'s error).
fn is_write_timeout(e: &hyper::Error) -> bool {
    let mut source = StdError::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        source = s.source();
    }
    false
}

/// What Go's net/http answers when plain HTTP arrives on a TLS port, so that
/// `curl http://` says what is wrong instead of failing obscurely.
const PLAIN_HTTP_ON_TLS_PORT: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Serves `handler` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish (up to [`DRAIN_TIMEOUT`]). The exporter answers
/// with whole bodies ([`Full`]); the simulator also streams (slow or endless
/// bodies), and a body that fails ends its connection.
pub async fn serve<H, Fut, B>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_tls(listener, None, Arc::new(Connections::new(Limits::default())), handler, shutdown).await
}

/// [`serve`], over TLS when `tls` is given, under the limits of `connections`.
/// A failed or slow handshake costs only its own connection.
pub async fn serve_tls<H, Fut, B>(
    listener: TcpListener,
    tls: Option<TlsConfigSource>,
    connections: Arc<Connections>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    // Handshakes in progress are abandoned at shutdown rather than drained.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(admitted) = connections.admit() else {
                    // Refused at once: every open connection is running a request.
                    tracing::debug!(%peer, "connection limit reached; refusing the connection");
                    drop(stream);
                    continue;
                };
                let limits = connections.limits;
                let handler = handler.clone();
                let conn = admitted.conn.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    let busy = Busy::new(conn.clone());
                    async move {
                        let _busy = busy;
                        Ok::<_, Infallible>(handler(req).await)
                    }
                });
                let watcher = graceful.watcher();
                let tls = tls.clone();
                let mut stopping = stopping.clone();
                let task = async move {
                    let evicted = admitted.conn.clone();
                    let serve = async {
                        let Some(tls) = tls else {
                            // hyper allocates its buffers (~16 KiB) at once: an idle
                            // connection costs none until its client sends a byte.
                            // (`readable()` is not enough: it reports a fresh socket ready.)
                            let mut first = [0u8; 1];
                            match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
                                Ok(Ok(1..)) => {}
                                Ok(_) => return None, // closed before a request
                                Err(_) => {
                                    tracing::debug!(%peer, "no request within {:?}; closing the connection", limits.header_read_timeout);
                                    return None;
                                }
                            }
                            // Boxed, as the handshake below: the task of an idle connection stays small.
                            return Some(Box::pin(watcher.watch(http1_builder(&limits).serve_connection(timed(stream, &limits), service))).await);
                        };
                        // Looked up here, not in the accept loop: it may re-read files.
                        let Some(config) = tls() else {
                            tracing::error!(%peer, "no TLS configuration; closing the connection");
                            return None;
                        };
                        let handshake = Box::pin(tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls_handshake(stream, config)));
                        let stream = tokio::select! {
                            r = handshake => match r {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return None;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out after {TLS_HANDSHAKE_TIMEOUT:?}");
                                    return None;
                                }
                            },
                            _ = stopping.wait_for(|s| *s) => return None,
                        };
                        Some(Box::pin(watcher.watch(http1_builder(&limits).serve_connection(timed(stream, &limits), service))).await)
                    };
                    let ended = tokio::select! {
                        ended = serve => ended,
                        _ = evicted.evict.notified() => {
                            tracing::debug!(%peer, "connection limit reached; closed the oldest idle connection");
                            None
                        }
                    };
                    if let Some(Err(e)) = ended {
                        if is_write_timeout(&e) {
                            admitted.connections.write_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "client stopped reading for {:?}; closing the connection", limits.write_timeout);
                        } else {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    drop(admitted);
                };
                tokio::spawn(task);
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(MAX_BUF_SIZE);
    builder
}

/// The connection's IO, with writes that fail after [`Limits::write_timeout`] without progress.
fn timed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(stream: S, limits: &Limits) -> TokioIo<std::pin::Pin<Box<TimeoutStream<S>>>> {
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_timeout));
    TokioIo::new(Box::pin(stream))
}

/// The server side of a TLS handshake; plain HTTP gets Go's 400 answer.
async fn tls_handshake(mut stream: TcpStream, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    // 0x16: a TLS handshake record (RFC 8446 5.1); a letter: an HTTP method.
    if first[0] != 0x16 && first[0].is_ascii_uppercase() {
        let _ = stream.write_all(PLAIN_HTTP_ON_TLS_PORT).await;
        let _ = stream.shutdown().await;
        // Read what the client sent before closing: closing with unread data
        // sends a reset, which can destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut total = 0;
            while let Ok(n @ 1..) = stream.read(&mut sink).await {
                total += n;
                if total > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "client sent plain HTTP to the TLS port"));
    }
    TlsAcceptor::from(config).accept(stream).await
}

/// A response with a body and content type.
pub fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("static status and header are valid")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
