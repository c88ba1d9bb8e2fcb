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
    // serde puts field names in backticks ("duplicate field `Token`"), and
    // numbers and booleans too ("invalid type: integer `42`"): keep the names only.
    let mut out = String::new();
    for (i, part) in keep.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else if FIELD_NAMES.contains(&part) {
            out.push('`');
            out.push_str(part);
            out.push('`');
        } else {
            out.truncate(out.trim_end().len());
        }
    }
    out.chars().take(80).collect()
}

/// The fields of [`Raw`] as IMDS names them.
const FIELD_NAMES: [&str; 8] = ["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"];

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

    #[test]
    fn a_numeric_secret_is_not_echoed_in_the_error() {
        for (value, kind) in [("1000000000", "integer"), ("-12345678901.5", "floating point"), ("true", "boolean")] {
            let err = parse(format!(r#"{{"SecretAccessKey":{value}}}"#).as_bytes()).unwrap_err();
            let printed = format!("{err} {err:?}");
            assert!(!printed.contains(value.trim_start_matches('-')), "{printed}");
            assert!(printed.contains(&format!("invalid type: {kind}, expected a string")), "{printed}");
        }
    }
}

/// Properties of [`parse`] on untrusted input (see `crate::fuzzing`).
#[cfg(test)]
mod fuzz {
    use chrono::{FixedOffset, SecondsFormat, TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{corpus, fuzz};

    /// Marks every secret the strategies generate; long enough never to occur by chance.
    const MARK: &str = "FuzzSecretValue";

    /// Everything a caller can print of a parse: the kept data, or the error.
    fn printed(result: &Result<CredentialInfo, DocumentError>) -> String {
        match result {
            Ok(info) => format!("{info:?}"),
            Err(e) => format!("{e} {e:?}"),
        }
    }

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).expect("strings serialize")
    }

    /// Any JSON value, nested a little.
    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
            ".{0,40}".prop_map(|s| json_string(&s)),
            Just(json_string("2026-11-28T23:00:00Z")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((".{0,8}", inner), 0..4).prop_map(|v| format!(
                    "{{{}}}",
                    v.iter().map(|(k, v)| format!("{}:{v}", json_string(k))).collect::<Vec<_>>().join(",")
                )),
            ]
        })
    }

    /// A secret as a hostile IMDS might send it: a string, a big number (which
    /// serde would echo in an error), or something else entirely.
    fn secret_value() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            "[A-Za-z0-9/+]{0,24}".prop_map(|s| {
                let v = format!("{MARK}{s}");
                (json_string(&v), v)
            }),
            (1_000_000_000u64..u64::MAX).prop_map(|n| (n.to_string(), n.to_string())),
            (1_000_000_000u64..u64::MAX).prop_map(|n| (format!("-{n}.5"), format!("{n}.5"))),
            (1_000_000_000u64..u64::MAX).prop_map(|n| (format!("[{n}]"), n.to_string())),
            (1_000_000_000u64..u64::MAX).prop_map(|n| (format!("{{\"k\":{n}}}"), n.to_string())),
        ]
    }

    const FIELDS: [&str; 9] =
        ["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId", "Message"];

    /// An object of known and unknown fields (possibly repeated) with any values;
    /// secrets in their own fields, listed for the check.
    fn document() -> impl Strategy<Value = (String, Vec<String>)> {
        let field = prop_oneof![
            4 => (prop::sample::select(&FIELDS[..]), json_value()).prop_map(|(k, v)| (k.to_string(), v, None)),
            2 => (prop::sample::select(&["SecretAccessKey", "Token"][..]), secret_value()).prop_map(|(k, (v, s))| (k.to_string(), v, Some(s))),
            1 => (".{0,12}", json_value()).prop_map(|(k, v)| (k, v, None)),
        ];
        prop::collection::vec(field, 0..12).prop_map(|fields| {
            let secrets = fields.iter().filter_map(|(_, _, s)| s.clone()).collect();
            let body = fields.iter().map(|(k, v, _)| format!("{}:{v}", json_string(k))).collect::<Vec<_>>().join(",");
            (format!("{{{body}}}"), secrets)
        })
    }

    fn assert_hidden(out: &str, secrets: &[String]) -> Result<(), TestCaseError> {
        for s in secrets {
            prop_assert!(!out.contains(s.as_str()), "secret {s:?} printed: {out}");
        }
        Ok(())
    }

    #[test]
    fn fuzz_arbitrary_bytes_never_panic() {
        fuzz(file!(), prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            let _ = printed(&parse(&bytes));
            Ok(())
        });
    }

    #[test]
    fn fuzz_any_json_object_never_panics_nor_prints_a_secret() {
        fuzz(file!(), document(), |(doc, secrets)| {
            let result = parse(doc.as_bytes());
            if let Ok(info) = &result
                && info.is_success()
            {
                prop_assert!(info.expiration.is_some() && info.access_key_id_suffix.as_ref().is_some_and(|k| k.chars().count() <= 4));
            }
            assert_hidden(&printed(&result), &secrets)
        });
    }

    /// A valid `Code=Success` document: fields in any order, with whitespace,
    /// extra fields and timestamps in every RFC 3339 form.
    fn valid() -> impl Strategy<Value = (String, DateTime<Utc>, String, String, String)> {
        // 0002-01-01 .. 9998-12-31: an offset never pushes the local date out of four digits.
        let instant = (-62_104_060_800i64..253_370_764_800, 0u32..1_000_000_000).prop_map(|(s, n)| Utc.timestamp_opt(s, n).unwrap());
        let form = (
            prop::sample::select(vec![
                SecondsFormat::Secs,
                SecondsFormat::Millis,
                SecondsFormat::Micros,
                SecondsFormat::Nanos,
                SecondsFormat::AutoSi,
            ]),
            any::<bool>(),
            -1439i32..=1439,
        );
        (
            instant,
            form,
            "[A-Z0-9]{4,20}",
            "[A-Za-z0-9/+]{8,40}",
            "[A-Za-z0-9/+=]{8,60}",
            any::<bool>(),
            prop::collection::vec(any::<u16>(), 0..3),
            "[ \n\t]{0,2}",
        )
            .prop_map(|(at, (format, z, minutes), key_id, secret, token, with_code, extras, ws)| {
                let local = at.with_timezone(&FixedOffset::east_opt(minutes * 60).unwrap());
                let written = local.to_rfc3339_opts(format, z);
                let secret = format!("{MARK}{secret}");
                let token = format!("{MARK}{token}");
                let mut fields = vec![
                    ("Type", json_string("AWS-HMAC")),
                    ("AccessKeyId", json_string(&key_id)),
                    ("SecretAccessKey", json_string(&secret)),
                    ("Token", json_string(&token)),
                    ("Expiration", json_string(&written)),
                    ("LastUpdated", json_string(&written)),
                ];
                if with_code {
                    fields.push(("Code", json_string("Success")));
                }
                let extras: Vec<(String, String)> = extras.iter().map(|n| (format!("Extra{n}"), n.to_string())).collect();
                // Order by a hash of the inputs: any order, reproducibly.
                fields.sort_by_key(|(k, _)| k.len() as u64 * 31 + (at.timestamp_subsec_nanos() as u64 % 7) * k.as_bytes()[0] as u64);
                let mut parts: Vec<String> = fields.iter().map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}")).collect();
                parts.extend(extras.iter().map(|(k, v)| format!("\"{k}\":{v}")));
                let doc = format!("{{{}{ws}}}", parts.join(","));
                let kept = match format {
                    SecondsFormat::Secs => Utc.timestamp_opt(at.timestamp(), 0).unwrap(),
                    SecondsFormat::Millis => Utc.timestamp_opt(at.timestamp(), at.timestamp_subsec_millis() * 1_000_000).unwrap(),
                    SecondsFormat::Micros => Utc.timestamp_opt(at.timestamp(), at.timestamp_subsec_micros() * 1_000).unwrap(),
                    _ => at,
                };
                (doc, kept, key_id, secret, token)
            })
    }

    #[test]
    fn fuzz_valid_documents_round_trip_the_expiration() {
        fuzz(file!(), valid(), |(doc, expires, key_id, secret, token)| {
            let info = parse(doc.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {doc}")))?;
            prop_assert!(info.is_success());
            prop_assert_eq!(info.expiration, Some(expires));
            prop_assert_eq!(info.last_updated, Some(expires));
            prop_assert_eq!(info.access_key_id_suffix.as_deref(), Some(&key_id[key_id.len() - 4..]));
            assert_hidden(&format!("{info:?}"), &[secret, token])
        });
    }

    #[test]
    fn fuzz_mutated_valid_documents_never_panic_nor_print_a_secret() {
        let mutations = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6);
        fuzz(file!(), (valid(), mutations), |((doc, _, _, secret, token), mutations)| {
            let mut bytes = doc.into_bytes();
            for (at, byte, kind) in mutations {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            assert_hidden(&printed(&parse(&bytes)), &[secret, token])
        });
    }

    /// The hand-kept corpus: every file parses or fails without a panic, and
    /// nothing marked `CorpusSecret` is printed.
    #[test]
    fn corpus_documents_never_panic_nor_print_a_secret() {
        for (path, bytes) in corpus("document") {
            let out = printed(&parse(&bytes));
            assert!(!out.contains("CorpusSecret"), "{}: {out}", path.display());
        }
    }
}
