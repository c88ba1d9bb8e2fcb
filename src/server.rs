//! The exporter's HTTP face: the metrics page, a landing page and health;
//! with `--web.config.file`, over TLS and/or behind basic authentication.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;

use crate::http::{Connections, TlsConfigSource, response, serve_tls};
use crate::probe::Prober;
use crate::webconfig::{REALM, WebConfigFile};
use crate::{metrics, report};

/// Probe deadline when Prometheus sends no scrape timeout (curl, browsers).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Subtracted from Prometheus' scrape timeout so the answer arrives in time
/// (blackbox_exporter's `--timeout-offset`).
pub const TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// Shared state of the HTTP handlers.
pub struct Exporter {
    /// Probes and their cache.
    pub prober: Prober,
    /// Path of the metrics page.
    pub telemetry_path: String,
    /// `--web.config.file`: TLS, basic authentication, extra headers.
    pub web_config: Option<Arc<WebConfigFile>>,
    /// The last rendered metrics page (see [`PAGE_REUSE`]).
    pub page: std::sync::Mutex<Option<Page>>,
    /// Open connections, their limits and counters.
    pub connections: Arc<Connections>,
}

/// How long a rendered metrics page is served again while no probe has run:
/// during a scrape storm the page is rendered a few times a second instead of
/// once per request; time-derived values (seconds until expiry) are at most
/// this old.
pub const PAGE_REUSE: Duration = Duration::from_millis(250);

/// A rendered metrics page and what it was rendered from (held, so that its
/// results cannot be freed and their addresses reused by newer ones).
#[derive(Debug)]
pub struct Page {
    snapshot: crate::probe::Snapshot,
    web_ok: bool,
    rendered_at: Instant,
    text: Bytes,
    gzip: Option<Bytes>,
}

/// Serves the exporter on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, exporter: Arc<Exporter>, shutdown: impl Future<Output = ()>) {
    let tls = exporter
        .web_config
        .clone()
        .filter(|w| w.tls_enabled())
        .map(|w| -> TlsConfigSource { Arc::new(move || w.current().tls().cloned()) });
    let connections = exporter.connections.clone();
    serve_tls(listener, tls, connections, move |req| handle(exporter.clone(), req), shutdown).await
}

async fn handle(exporter: Arc<Exporter>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(web) = &exporter.web_config else {
        return route(&exporter, req).await;
    };
    let config = web.current();
    // Every path is protected, health included, as with exporter-toolkit.
    let mut resp = match config.auth() {
        Some(auth) if !auth.check(req.headers().get(AUTHORIZATION)).await => {
            let mut resp = response(401, "text/plain; charset=utf-8", "Unauthorized\n");
            let challenge = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")).expect("static realm is a valid header");
            resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            resp
        }
        _ => route(&exporter, req).await,
    };
    for (name, value) in config.headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

async fn route(exporter: &Exporter, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(405, "text/plain; charset=utf-8", "method not allowed\n");
    }
    let path = req.uri().path();
    if path == exporter.telemetry_path {
        return metrics_page(exporter, &req).await;
    }
    match path {
        "/" | "/check.json" => {
            let deadline = Instant::now() + DEFAULT_SCRAPE_TIMEOUT.saturating_sub(TIMEOUT_OFFSET);
            let report = report::build(&exporter.prober.snapshot(deadline).await);
            if path == "/" {
                response(200, "text/html; charset=utf-8", report::render_html(&report, &exporter.telemetry_path))
            } else {
                response(200, "application/json", report::render_json(&report))
            }
        }
        "/-/healthy" | "/-/ready" => response(200, "text/plain; charset=utf-8", "OK\n"),
        _ => response(404, "text/plain; charset=utf-8", "not found\n"),
    }
}

async fn metrics_page(exporter: &Exporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let deadline = Instant::now() + probe_budget(req.headers().get("x-prometheus-scrape-timeout-seconds").and_then(|v| v.to_str().ok()));
    let snapshot = exporter.prober.snapshot(deadline).await;
    let web_status = exporter.web_config.as_ref().map(|w| w.status());
    let web_ok = web_status.as_ref().is_none_or(|s| s.last_reload_successful);
    let gzip = accepts_gzip(req);
    let (text, gz) = {
        // Rendering under the lock: concurrent scrapes wait for one render instead of all rendering.
        let mut page = exporter.page.lock().expect("page lock");
        if !page.as_ref().is_some_and(|p| p.web_ok == web_ok && p.snapshot.same_probes(&snapshot) && p.rendered_at.elapsed() < PAGE_REUSE) {
            let mut body = metrics::render(&snapshot);
            if let Some(s) = &web_status {
                body.push_str(&metrics::render_web_config(s));
            }
            body.push_str(&metrics::render_connections(&exporter.connections.stats()));
            *page = Some(Page { snapshot, web_ok, rendered_at: Instant::now(), text: Bytes::from(body), gzip: None });
        }
        let p = page.as_mut().expect("rendered above");
        if gzip && p.gzip.is_none() {
            p.gzip = gzip_bytes(&p.text);
        }
        (p.text.clone(), if gzip { p.gzip.clone() } else { None })
    };
    let mut resp = match gz {
        Some(gz) => {
            let mut resp = response(200, metrics::CONTENT_TYPE, gz);
            resp.headers_mut().insert("content-encoding", "gzip".parse().expect("static header"));
            resp
        }
        None => response(200, metrics::CONTENT_TYPE, text),
    };
    // Both answers depend on Accept-Encoding: caches must not mix them up.
    resp.headers_mut().insert("vary", "accept-encoding".parse().expect("static header"));
    resp
}

fn gzip_bytes(text: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 4), flate2::Compression::fast());
    enc.write_all(text).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// The probe deadline for a scrape: Prometheus' timeout minus an offset
/// (never less than half of it), or [`DEFAULT_SCRAPE_TIMEOUT`].
pub fn probe_budget(header: Option<&str>) -> Duration {
    let timeout = header
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| Duration::from_secs_f64(t.min(300.0)))
        .unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
    timeout.saturating_sub(TIMEOUT_OFFSET).max(timeout / 2)
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers().get_all("accept-encoding").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|enc| {
        let mut parts = enc.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
        name.eq_ignore_ascii_case("gzip") && !q_zero
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_budget_follows_the_scrape_timeout() {
        assert_eq!(probe_budget(Some("10")), Duration::from_millis(9500));
        assert_eq!(probe_budget(Some("0.6")), Duration::from_millis(300), "never less than half");
        assert_eq!(probe_budget(None), Duration::from_millis(9500));
        assert_eq!(probe_budget(Some("junk")), Duration::from_millis(9500));
        assert_eq!(probe_budget(Some("-3")), Duration::from_millis(9500));
        assert_eq!(probe_budget(Some("1e9")), Duration::from_millis(299_500), "capped");
    }
}
