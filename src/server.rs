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

use crate::http::{TlsConfigSource, response, serve_tls};
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
}

/// Serves the exporter on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, exporter: Arc<Exporter>, shutdown: impl Future<Output = ()>) {
    let tls = exporter
        .web_config
        .clone()
        .filter(|w| w.tls_enabled())
        .map(|w| -> TlsConfigSource { Arc::new(move || w.current().tls().cloned()) });
    serve_tls(listener, tls, move |req| handle(exporter.clone(), req), shutdown).await
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
    let mut body = metrics::render(&snapshot);
    if let Some(web) = &exporter.web_config {
        body.push_str(&metrics::render_web_config(&web.status()));
    }
    if accepts_gzip(req) {
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
        if let Ok(gz) = enc.write_all(body.as_bytes()).and_then(|()| enc.finish()) {
            let mut resp = response(200, metrics::CONTENT_TYPE, gz);
            resp.headers_mut().insert("content-encoding", "gzip".parse().expect("static header"));
            return resp;
        }
    }
    response(200, metrics::CONTENT_TYPE, body)
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
