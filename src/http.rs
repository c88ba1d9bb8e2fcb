//! A minimal HTTP/1.1 server loop on hyper, shared by the exporter and the
//! simulator: accept, (optionally) TLS handshake, serve each connection on its
//! own task, drain on shutdown.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
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
    serve_tls(listener, None, handler, shutdown).await
}

/// [`serve`], over TLS when `tls` is given. A failed or slow handshake costs
/// only its own connection.
pub async fn serve_tls<H, Fut, B>(listener: TcpListener, tls: Option<TlsConfigSource>, handler: H, shutdown: impl Future<Output = ()>)
where
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
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let Some(tls) = &tls else {
                    let conn = graceful.watch(http1_builder().serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                    continue;
                };
                let tls = tls.clone();
                let watcher = graceful.watcher();
                let mut stopping = stopping.clone();
                tokio::spawn(async move {
                    // Looked up here, not in the accept loop: it may re-read files.
                    let Some(config) = tls() else {
                        tracing::error!(%peer, "no TLS configuration; closing the connection");
                        return;
                    };
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls_handshake(stream, config));
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out after {TLS_HANDSHAKE_TIMEOUT:?}");
                                return;
                            }
                        },
                        _ = stopping.wait_for(|s| *s) => return,
                    };
                    let conn = watcher.watch(http1_builder().serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
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

fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    builder
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
