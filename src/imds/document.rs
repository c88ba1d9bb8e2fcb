//! The IMDS security-credentials document, parsed the way the SDKs do and
//! reduced at once to what the exporter may keep: no secret survives parsing.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::secret::{Secret, key_id_suffix};

/// What the exporter keeps of a credential document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    /// `Code`: `Success`, or why IMDS could not get credentials (e.g. `AssumeRoleUnauthorizedAccess`).
    pub code: String,
    /// `Type`, normally `AWS-HMAC`.
    pub kind: String,
    /// `LastUpdated`: when IMDS last rotated the credentials.
    pub last_updated: Option<DateTime<Utc>>,
    /// `Expiration`, absent only when `Code` is not `Success`.
    pub expiration: Option<DateTime<Utc>>,
    /// Last four characters of `AccessKeyId`.
    pub access_key_id_suffix: Option<String>,
    /// `AccountId`, served on the extended path.
    pub account_id: Option<String>,
}

impl CredentialInfo {
    /// `Code` is `Success`: the document carries usable credentials.
    pub fn is_success(&self) -> bool {
        self.code == "Success"
    }
}

/// Why a document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON, not an object, a duplicate or mistyped field.
    #[error("credential document is not valid JSON: {0}")]
    Json(String),
    /// `Code` is `Success` but a field the SDKs require is missing or empty.
    #[error("credential document has Code=Success but no {0}")]
    MissingField(&'static str),
    /// A timestamp is not RFC 3339.
    #[error("credential document field {field} is not an RFC 3339 timestamp: {value:?}")]
    BadTimestamp {
        /// Field name.
        field: &'static str,
        /// Offending value, truncated (timestamps are not secret).
        value: String,
    },
}

/// Field names as IMDS writes them; serde rejects duplicates, so a document
/// that names a field twice is refused instead of silently taking one.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    code: Option<String>,
    last_updated: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    token: Option<Secret>,
    expiration: Option<String>,
    account_id: Option<String>,
}

/// Parses a credential document; secrets are checked for presence and dropped (zeroed) here.
///
/// Rules from the SDKs: botocore `utils.py` InstanceMetadataFetcher
/// `_contains_all_credential_fields` requires AccessKeyId, SecretAccessKey,
/// Token and Expiration; smithy-rs `aws-config/src/json_credentials.rs`
/// treats a `Code` other than `Success` as an error carrying the code, and a
/// missing `Code` as success.
pub fn parse(body: &[u8]) -> Result<CredentialInfo, DocumentError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| DocumentError::Json(json_error(&e)))?;
    let code = raw.code.unwrap_or_else(|| "Success".to_string());
    let last_updated = timestamp("LastUpdated", raw.last_updated.as_deref())?;
    let info = CredentialInfo {
        kind: raw.kind.unwrap_or_default(),
        last_updated,
        expiration: None,
        access_key_id_suffix: raw.access_key_id.as_deref().filter(|k| !k.trim().is_empty()).map(key_id_suffix),
        account_id: raw.account_id.filter(|a| !a.is_empty()),
        code,
    };
    if !info.is_success() {
        return Ok(CredentialInfo { expiration: timestamp("Expiration", raw.expiration.as_deref()).unwrap_or(None), ..info });
    }
    if info.access_key_id_suffix.is_none() {
        return Err(DocumentError::MissingField("AccessKeyId"));
    }
    if raw.secret_access_key.as_ref().is_none_or(Secret::is_empty) {
        return Err(DocumentError::MissingField("SecretAccessKey"));
    }
    if raw.token.as_ref().is_none_or(Secret::is_empty) {
        return Err(DocumentError::MissingField("Token"));
    }
    let expiration = timestamp("Expiration", raw.expiration.as_deref())?.ok_or(DocumentError::MissingField("Expiration"))?;
    Ok(CredentialInfo { expiration: Some(expiration), ..info })
}

/// serde_json's message without the input excerpt, which could hold a secret.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "I/O error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected structure",
        Category::Eof => "truncated document",
    };
    // `Data` errors name a field ("duplicate field `Token`", "invalid type"), never its value.
    let detail = if e.classify() == Category::Data { format!(" ({})", data_error_kind(e)) } else { String::new() };
    format!("{what}{detail} at line {} column {}", e.line(), e.column())
}

fn data_error_kind(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // Keep only the part before any quoted value serde may echo back.
    let cut = msg.find(['"', '\'']).unwrap_or(msg.len());
    let keep = msg[..cut].split(" at line ").next().unwrap_or("").trim();
    keep.chars().take(80).collect()
}

fn timestamp(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, DocumentError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| DocumentError::BadTimestamp { field, value: v.chars().take(40).collect() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEPSESSIONTOKEN";

    fn doc(fields: &str) -> Vec<u8> {
        format!("{{{fields}}}").into_bytes()
    }

    fn full() -> String {
        format!(
            r#""Code":"Success","LastUpdated":"2026-11-28T17:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAEXAMPLEAB12","SecretAccessKey":"{SECRET}","Token":"{TOKEN}","Expiration":"2026-11-28T23:00:00Z""#
        )
    }

    #[test]
    fn parses_a_success_document() {
        let info = parse(&doc(&full())).unwrap();
        assert!(info.is_success());
        assert_eq!(info.kind, "AWS-HMAC");
        assert_eq!(info.access_key_id_suffix.as_deref(), Some("AB12"));
        assert_eq!(info.expiration.unwrap().to_rfc3339(), "2026-11-28T23:00:00+00:00");
        assert_eq!(info.last_updated.unwrap().to_rfc3339(), "2026-11-28T17:00:00+00:00");
        assert!(!format!("{info:?}").contains(SECRET));
    }

    #[test]
    fn accepts_fractional_seconds_offsets_and_account_id() {
        let body = full().replace("2026-11-28T23:00:00Z", "2026-11-28T23:00:00.123456+01:00") + r#","AccountId":"123456789012""#;
        let info = parse(&doc(&body)).unwrap();
        assert_eq!(info.expiration.unwrap().to_rfc3339(), "2026-11-28T22:00:00.123456+00:00");
        assert_eq!(info.account_id.as_deref(), Some("123456789012"));
    }

    #[test]
    fn a_failure_code_is_reported_not_treated_as_success() {
        let info = parse(&doc(r#""Code":"AssumeRoleUnauthorizedAccess","Message":"denied","LastUpdated":"2026-11-28T17:00:00Z""#)).unwrap();
        assert!(!info.is_success());
        assert_eq!(info.code, "AssumeRoleUnauthorizedAccess");
        assert_eq!(info.expiration, None);
    }

    #[test]
    fn missing_code_means_success_as_in_smithy_rs() {
        let body = full().replace(r#""Code":"Success","#, "");
        assert!(parse(&doc(&body)).unwrap().is_success());
    }

    #[test]
    fn rejects_broken_documents_without_echoing_secrets() {
        let cases: Vec<(String, &str)> = vec![
            (full().replace(r#""Token":"IQoJb3JpZ2luX2VjEPSESSIONTOKEN","#, ""), "Token"),
            (full().replace("ASIAEXAMPLEAB12", ""), "AccessKeyId"),
            (full().replace(SECRET, " "), "SecretAccessKey"),
            (full().replace(r#","Expiration":"2026-11-28T23:00:00Z""#, ""), "Expiration"),
            (full().replace("2026-11-28T23:00:00Z", "tomorrow"), "RFC 3339"),
            (format!(r#"{},"Token":"{TOKEN}x""#, full()), "duplicate field"),
            (full().replace(&format!(r#""{SECRET}""#), "42"), "unexpected structure"),
            (full()[..40].to_string(), "truncated"),
        ];
        for (body, want) in cases {
            let err = parse(&doc(&body)).expect_err(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains(SECRET) && !err.contains(TOKEN), "{err}");
        }
        for bytes in [&b"\xff\xfe"[..], b"[]", b"null", b"", b"{\"Code\": 7}"] {
            assert!(parse(bytes).is_err());
        }
    }
}
