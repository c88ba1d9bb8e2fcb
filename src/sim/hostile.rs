//! A hostile or broken IMDS, one misbehaviour at a time ([`HostileImds`]),
//! for the tests of what the exporter does with it: oversized and endless
//! bodies, broken documents, redirects, resets, 401 loops and bad token TTLs.
//!
//! Each misbehaviour rewrites what the healthy simulator would have answered,
//! so tokens, roles and the credential schedule keep working underneath.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::timefmt::rfc3339;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};

/// The simulator's response body: whole, streamed, endless or failing.
pub type SimBody = UnsyncBoxBody<Bytes, io::Error>;

/// Size of [`HostileImds::OversizedBody`] documents: 128 times the exporter's 64 KiB cap.
pub const OVERSIZED_BYTES: u64 = 8 * 1024 * 1024;
/// [`HostileImds::Slowloris`] sends one byte this often, forever.
pub const SLOWLORIS_INTERVAL: Duration = Duration::from_millis(100);
/// [`HostileImds::ExpirationFarFuture`]'s expiry.
pub const FAR_FUTURE: &str = "9999-12-31T23:59:59Z";
/// [`HostileImds::ExpirationPast`]: the credentials served expired this long ago.
pub const EXPIRED_AGO: Duration = Duration::from_secs(3600);

/// One way the simulated IMDS misbehaves. Unless a variant says otherwise it
/// concerns the credential document; the token and the role listing are served normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostileImds {
    /// The document is [`OVERSIZED_BYTES`] of spaces, announced by
    /// `Content-Length` when `content_length`, else chunked.
    OversizedBody {
        /// Announce the size in `Content-Length`.
        content_length: bool,
    },
    /// The document's headers arrive, then one byte every [`SLOWLORIS_INTERVAL`], forever.
    Slowloris,
    /// Every GET answer is labelled `text/html`; the bodies are the healthy ones
    /// (IMDS sends `text/plain`; the SDKs ignore the header).
    WrongContentType,
    /// Every GET is answered 200 with an HTML page, as by a proxy or captive
    /// portal in the way; the token PUT passes.
    HtmlPage,
    /// The role listing holds bytes that are not UTF-8 around the role name.
    InvalidUtf8Listing,
    /// The document holds bytes that are not UTF-8 in a string value.
    InvalidUtf8Document,
    /// A `Code=Success` document without `Token` and `Expiration`.
    MissingFields,
    /// The document has fields IMDS does not send (strings, numbers, nested objects).
    ExtraFields,
    /// The document names `Expiration` twice, with different values.
    DuplicateFields,
    /// The document's `Expiration` passed [`EXPIRED_AGO`] ago.
    ExpirationPast,
    /// The document's `Expiration` is [`FAR_FUTURE`].
    ExpirationFarFuture,
    /// The document's `Expiration` is not a timestamp.
    ExpirationUnparseable,
    /// Every request is answered `302 Found` to the same path under `location`
    /// (a base URL such as another simulator's).
    Redirect {
        /// Base URL the redirects point to.
        location: String,
    },
    /// The document request's connection is closed without an answer.
    ConnectionReset,
    /// Every GET is answered 401, even with a token issued a moment ago.
    Unauthorized401Loop,
    /// Tokens are issued without the `x-aws-ec2-metadata-token-ttl-seconds` header.
    TokenTtlAbsent,
    /// Tokens are issued with `x-aws-ec2-metadata-token-ttl-seconds: 0` (they stay valid).
    TokenTtlZero,
}

impl HostileImds {
    /// Every variant, with `redirect_to` as the redirect target.
    pub fn all(redirect_to: &str) -> Vec<HostileImds> {
        use HostileImds::*;
        vec![
            OversizedBody { content_length: true },
            OversizedBody { content_length: false },
            Slowloris,
            WrongContentType,
            HtmlPage,
            InvalidUtf8Listing,
            InvalidUtf8Document,
            MissingFields,
            ExtraFields,
            DuplicateFields,
            ExpirationPast,
            ExpirationFarFuture,
            ExpirationUnparseable,
            Redirect { location: redirect_to.to_string() },
            ConnectionReset,
            Unauthorized401Loop,
            TokenTtlAbsent,
            TokenTtlZero,
        ]
    }

    /// Name on the command line (`simulate --hostile NAME`); `redirect=URL` for [`HostileImds::Redirect`].
    pub fn name(&self) -> String {
        use HostileImds::*;
        let name = match self {
            OversizedBody { content_length: true } => "oversized-body",
            OversizedBody { content_length: false } => "oversized-body-chunked",
            Slowloris => "slowloris",
            WrongContentType => "wrong-content-type",
            HtmlPage => "html-page",
            InvalidUtf8Listing => "invalid-utf8-listing",
            InvalidUtf8Document => "invalid-utf8-document",
            MissingFields => "missing-fields",
            ExtraFields => "extra-fields",
            DuplicateFields => "duplicate-fields",
            ExpirationPast => "expiration-past",
            ExpirationFarFuture => "expiration-far-future",
            ExpirationUnparseable => "expiration-unparseable",
            Redirect { location } => return format!("redirect={location}"),
            ConnectionReset => "connection-reset",
            Unauthorized401Loop => "unauthorized-loop",
            TokenTtlAbsent => "token-ttl-absent",
            TokenTtlZero => "token-ttl-zero",
        };
        name.to_string()
    }

    /// The variant named `name` (see [`HostileImds::name`]).
    pub fn by_name(name: &str) -> Result<HostileImds, String> {
        if let Some(location) = name.strip_prefix("redirect=") {
            return Ok(HostileImds::Redirect { location: location.to_string() });
        }
        let all = HostileImds::all("URL");
        all.iter().find(|h| h.name() == name).cloned().ok_or_else(|| {
            let names: Vec<String> = all.iter().map(HostileImds::name).collect();
            format!("unknown hostile IMDS behaviour {name:?}; choose one of: {}", names.join(", "))
        })
    }
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    /// `PUT /latest/api/token`.
    Token,
    /// Role listing.
    Listing,
    /// Credential document.
    Credentials,
    /// `iam/info`.
    Info,
    /// Anything else (container credentials, unknown paths).
    Other,
}

/// An answer given before the healthy simulator is asked, if `hostile` preempts it.
pub(super) fn preempt(hostile: &HostileImds, resource: Resource, path: &str) -> Option<Response<SimBody>> {
    match hostile {
        HostileImds::Redirect { location } => {
            let mut r = whole(302, "text/plain", Bytes::new());
            let target = format!("{}{path}", location.trim_end_matches('/'));
            r.headers_mut().insert(LOCATION, HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/")));
            Some(r)
        }
        HostileImds::Unauthorized401Loop if matches!(resource, Resource::Listing | Resource::Credentials | Resource::Info) => {
            Some(whole(401, "text/plain", Bytes::new()))
        }
        _ => None,
    }
}

/// `healthy`, the simulator's answer to a request for `resource`, as `hostile` serves it.
pub(super) async fn rewrite(
    hostile: &HostileImds,
    resource: Resource,
    healthy: Response<SimBody>,
    now: DateTime<Utc>,
) -> Response<SimBody> {
    use HostileImds::*;
    let ok = healthy.status() == 200;
    match (hostile, resource) {
        (TokenTtlAbsent, Resource::Token) if ok => {
            let mut r = healthy;
            r.headers_mut().remove("x-aws-ec2-metadata-token-ttl-seconds");
            r
        }
        (TokenTtlZero, Resource::Token) if ok => {
            let mut r = healthy;
            r.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", HeaderValue::from_static("0"));
            r
        }
        (WrongContentType, Resource::Listing | Resource::Credentials | Resource::Info) if ok => {
            let mut r = healthy;
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        }
        (HtmlPage, Resource::Listing | Resource::Credentials | Resource::Info) => {
            whole(200, "text/html; charset=utf-8", Bytes::from_static(HTML_PAGE))
        }
        (InvalidUtf8Listing, Resource::Listing) if ok => {
            let role = text(healthy).await;
            whole(200, "text/plain", [&b"\xff\xfe"[..], role.as_bytes(), b"\xc3\x28"].concat().into())
        }
        (OversizedBody { content_length }, Resource::Credentials) if ok => {
            let mut r = streamed(Filler { remaining: OVERSIZED_BYTES, exact: *content_length });
            if *content_length {
                r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(OVERSIZED_BYTES));
            }
            r
        }
        (Slowloris, Resource::Credentials) if ok => streamed(Drip { tick: tokio::time::interval(SLOWLORIS_INTERVAL) }),
        (ConnectionReset, Resource::Credentials) if ok => streamed(Reset),
        (
            InvalidUtf8Document
            | MissingFields
            | ExtraFields
            | DuplicateFields
            | ExpirationPast
            | ExpirationFarFuture
            | ExpirationUnparseable,
            Resource::Credentials,
        ) if ok => {
            let doc = text(healthy).await;
            whole(200, "text/plain", document(hostile, &doc, now))
        }
        _ => healthy,
    }
}

/// The healthy document `doc` (one `"Field" : value` per line) as `hostile` breaks it.
fn document(hostile: &HostileImds, doc: &str, now: DateTime<Utc>) -> Bytes {
    let expiration = |value: &str| {
        let lines = doc.lines().map(|l| match l.split_once("\"Expiration\" : \"") {
            Some((indent, rest)) => format!("{indent}\"Expiration\" : \"{value}\"{}", rest.split_once('"').map_or("", |(_, tail)| tail)),
            None => l.to_string(),
        });
        lines.collect::<Vec<_>>().join("\n")
    };
    let append = |fields: &str| format!("{},\n{fields}\n}}", doc.trim_end().trim_end_matches('}').trim_end());
    let text = match hostile {
        HostileImds::InvalidUtf8Document => {
            let mut bytes = doc.as_bytes().to_vec();
            if let Some(at) = doc.find("AWS-HMAC") {
                bytes.splice(at + 4..at + 4, *b"\xff\xfe\xc3\x28");
            }
            return bytes.into();
        }
        HostileImds::MissingFields => {
            let kept: Vec<&str> = doc.lines().filter(|l| !l.contains("\"Token\"") && !l.contains("\"Expiration\"")).collect();
            kept.join("\n")
        }
        HostileImds::ExtraFields => append(
            "  \"Message\" : \"The security credentials are valid\",\n  \"Version\" : 2,\n  \"Nested\" : { \"a\" : [1, 2.5, null, true, {\"b\" : \"c\"}] },\n  \"Empty\" : null",
        ),
        HostileImds::DuplicateFields => append(&format!("  \"Expiration\" : \"{}\"", rfc3339(now + chrono::Duration::days(30)))),
        HostileImds::ExpirationPast => expiration(&rfc3339(now - chrono::Duration::from_std(EXPIRED_AGO).unwrap_or_default())),
        HostileImds::ExpirationFarFuture => expiration(FAR_FUTURE),
        HostileImds::ExpirationUnparseable => expiration("next Tuesday, around noon"),
        _ => doc.to_string(),
    };
    commas(&text).into()
}

/// Keeps a one-field-per-line document valid JSON after lines were removed:
/// a comma after every field but the last.
fn commas(doc: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let field = line.trim_start().starts_with('"');
        let next_is_field = lines.get(i + 1).is_some_and(|l| l.trim_start().starts_with('"'));
        let bare = line.trim_end().trim_end_matches(',');
        out.push(if field && next_is_field {
            format!("{bare},")
        } else if field {
            bare.to_string()
        } else {
            line.to_string()
        });
    }
    out.join("\n")
}

const HTML_PAGE: &[u8] = b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head>\n<body><h1>Proxy authentication required</h1><p>Sign in to continue.</p></body></html>\n";

async fn text(r: Response<SimBody>) -> String {
    let bytes = r.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A whole body.
pub(super) fn whole(status: u16, content_type: &str, body: Bytes) -> Response<SimBody> {
    crate::http::response(status, content_type, body).map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

fn streamed(body: impl Body<Data = Bytes, Error = io::Error> + Send + 'static) -> Response<SimBody> {
    let mut r = Response::new(body.boxed_unsync());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `remaining` bytes of spaces in 16 KiB frames; the size is announced when `exact`.
struct Filler {
    remaining: u64,
    exact: bool,
}

static SPACES: [u8; 16 * 1024] = [b' '; 16 * 1024];

impl Body for Filler {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(SPACES.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&SPACES[..n as usize])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact { SizeHint::with_exact(self.remaining) } else { SizeHint::default() }
    }
}

/// One space per tick, forever.
struct Drip {
    tick: tokio::time::Interval,
}

impl Body for Drip {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        ready!(self.tick.poll_tick(cx));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

/// Fails at once: hyper drops the connection without sending the response.
struct Reset;

impl Body for Reset {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionReset, "simulated connection reset"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-11-28T17:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIASIMULATED0001\",\n  \"SecretAccessKey\" : \"s\",\n  \"Token\" : \"t\",\n  \"Expiration\" : \"2026-11-28T23:00:00Z\",\n  \"AccountId\" : \"123456789012\"\n}";

    #[test]
    fn names_round_trip() {
        for h in HostileImds::all("http://127.0.0.1:1") {
            assert_eq!(HostileImds::by_name(&h.name()), Ok(h.clone()), "{h:?}");
        }
        assert!(HostileImds::by_name("nope").unwrap_err().contains("slowloris"));
    }

    #[test]
    fn broken_documents_are_broken_in_exactly_one_way() {
        let now = Utc::now();
        let json = |h: &HostileImds| serde_json::from_slice::<serde_json::Value>(&document(h, DOC, now));
        let doc = |h: &HostileImds| String::from_utf8_lossy(&document(h, DOC, now)).into_owned();
        assert!(json(&HostileImds::InvalidUtf8Document).is_err());
        let missing = json(&HostileImds::MissingFields).unwrap();
        assert!(missing.get("Token").is_none() && missing.get("Expiration").is_none() && missing.get("AccountId").is_some());
        let extra = json(&HostileImds::ExtraFields).unwrap();
        assert_eq!((extra["Version"].as_i64(), extra["Expiration"].as_str()), (Some(2), Some("2026-11-28T23:00:00Z")));
        assert_eq!(doc(&HostileImds::DuplicateFields).matches("\"Expiration\"").count(), 2);
        let past = json(&HostileImds::ExpirationPast).unwrap();
        let past = DateTime::parse_from_rfc3339(past["Expiration"].as_str().unwrap()).unwrap();
        assert!(past < now - chrono::Duration::minutes(59));
        assert_eq!(json(&HostileImds::ExpirationFarFuture).unwrap()["Expiration"], FAR_FUTURE);
        assert!(json(&HostileImds::ExpirationUnparseable).unwrap()["Expiration"].as_str().unwrap().contains("Tuesday"));
        assert_eq!(json(&HostileImds::ExpirationUnparseable).unwrap()["AccountId"], "123456789012");
    }
}
