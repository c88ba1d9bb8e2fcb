//! The shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`),
//! parsed with the profile rules the SDKs share:
//!
//! - config file: `[profile NAME]` and `[default]` are profiles (`[profile default]`
//!   wins over `[default]`), `[sso-session NAME]` are SSO sessions, other sections
//!   are not profiles (botocore `configloader.build_profile_map`, SDK for Java v2
//!   `ProfileFileReader`);
//! - credentials file: every `[NAME]` is a profile, taken literally;
//! - a profile in both files is merged, the credentials file's keys winning
//!   (botocore `Session.full_config`, SDK for Java v2 `ProfileFile.aggregator`).
//!
//! The INI syntax is parsed by `rust-ini` (crate `rust-ini`, module `ini`):
//! maintained since 2014, widely used, and configurable to match Python's
//! `RawConfigParser` where botocore depends on it: no quote or escape
//! processing, no inline comments, `=` or `:` as delimiter, indented
//! continuation lines (the nested `s3 =` blocks of `~/.aws/config`).
//! `configparser` was the alternative; it lowercases section names, which
//! would merge profiles the SDKs keep apart.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use zeroize::Zeroizing;

use super::env::Value;
use super::{ChainError, ErrorReason};
use crate::fsread::{self, MAX_CONFIG_FILE};

/// The only keys whose values may appear in a report, a page or a log (an
/// allow-list: a key the exporter does not know, `external_id`, `endpoint_url`
/// with its userinfo, the nested `s3` block, is never shown). Even these are
/// hidden when their value runs onto an indented continuation line: Python's
/// `RawConfigParser` makes `source_profile = base` followed by
/// `  aws_session_token = ...` one value, secret included. ARNs, account ids
/// and role names identify but do not authenticate, so they are shown.
pub const SHOWN_KEYS: [&str; 18] = [
    "region",
    "output",
    "role_arn",
    "source_profile",
    "credential_source",
    "web_identity_token_file",
    "role_session_name",
    "mfa_serial",
    "duration_seconds",
    "sso_session",
    "sso_account_id",
    "sso_role_name",
    "sso_start_url",
    "sso_region",
    "sso_registration_scopes",
    "x_security_token_expires",
    "aws_expiration",
    "expiration",
];

/// Whether the value of `key` may be shown: an allow-listed key on one line.
fn shown_value(key: &str, value: &str) -> bool {
    SHOWN_KEYS.contains(&key) && !value.contains(['\n', '\r'])
}

/// Keys that credential tools write next to temporary keys to say when they
/// expire; no SDK reads them, so the exporter is the only one to warn. In order of preference:
/// - `x_security_token_expires`: saml2aws (`pkg/awsconfig`, RFC 3339), okta-aws-cli
///   (`--expiry-aws-variables`), gimme-aws-creds;
/// - `aws_expiration`: clisso (`aws/aws.go`, RFC 3339);
/// - `expiration`: aws-mfa (broamski, `%Y-%m-%d %H:%M:%S` in UTC).
pub const EXPIRY_KEYS: [&str; 3] = ["x_security_token_expires", "aws_expiration", "expiration"];

/// The keys of one profile, secrets as [`Value::Secret`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// Key (lowercased, as Python's `RawConfigParser` does) to value.
    pub values: BTreeMap<String, Value>,
}

impl Section {
    /// The value of `key`, set (possibly empty) or not.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(Value::expose)
    }

    /// Whether `key` is present at all (botocore tests `key in profile`).
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// `key` is present with a non-blank value.
    pub fn non_empty(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.trim().is_empty())
    }

    /// The value of `key` as it may be printed: the value itself when
    /// [`SHOWN_KEYS`] allows it, else a note that it is hidden.
    pub fn shown(&self, key: &str) -> Shown<'_> {
        match self.values.get(key) {
            Some(Value::Plain(v)) => Shown::Value(v),
            Some(Value::Secret(_)) => Shown::Hidden,
            None => Shown::Value(""),
        }
    }

    /// Expiry written by a credential tool (see [`EXPIRY_KEYS`]): the key it was
    /// read from and the time, or why the value could not be read.
    pub fn expiry(&self) -> Option<(&'static str, Result<DateTime<Utc>, String>)> {
        EXPIRY_KEYS.iter().find_map(|key| {
            self.values.get(*key).map(|v| match v {
                Value::Plain(v) => (*key, parse_expiry(v)),
                Value::Secret(_) => (*key, Err(format!("not a timestamp ({})", Shown::Hidden))),
            })
        })
    }

    fn merge_from(&mut self, other: &Section) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }
}

/// A profile value as it may be printed (see [`Section::shown`]); `{:?}` quotes a shown value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shown<'a> {
    /// An allow-listed value on one line.
    Value(&'a str),
    /// Any other value.
    Hidden,
}

impl Shown<'_> {
    const HIDDEN: &'static str = "<value not shown: not an allow-listed key, or continued on an indented line>";
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Value(v) => f.write_str(v),
            Shown::Hidden => f.write_str(Self::HIDDEN),
        }
    }
}

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Value(v) => std::fmt::Debug::fmt(v, f),
            Shown::Hidden => f.write_str(Self::HIDDEN),
        }
    }
}

/// Parses the timestamps credential tools write: RFC 3339, `+0000` offsets, and
/// zone-less `YYYY-MM-DD[ T]HH:MM:SS[.f]` taken as UTC (aws-mfa writes `utcnow()` that way).
pub fn parse_expiry(value: &str) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(v, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("not a timestamp: {:?}", v.chars().take(40).collect::<String>()))
}

/// One parsed INI file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IniFile {
    /// Path as the process names it (for messages).
    pub path: PathBuf,
    /// Sections by their literal name, duplicates merged (later keys win, as in SDK for Java v2).
    pub sections: BTreeMap<String, Section>,
    /// Sections or keys that appear twice: Python's strict `RawConfigParser` refuses
    /// the file (`DuplicateSectionError`), so botocore fails with `ConfigParseError`.
    pub duplicates: Vec<String>,
    /// Keys before the first section header: botocore fails (`MissingSectionHeaderError`).
    pub keys_outside_sections: bool,
}

impl IniFile {
    /// Reads `host_path` (where the exporter finds the file); `Ok(None)` when it
    /// does not exist or is not a file, which every SDK treats as "no profiles".
    pub fn load(host_path: &Path, shown: &Path) -> Result<Option<IniFile>, ChainError> {
        let text = match fsread::read(host_path, MAX_CONFIG_FILE) {
            Ok(bytes) => bytes,
            // botocore `raw_config_parse`: `os.path.isfile` false -> ConfigNotFound -> no profiles.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => {
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(ChainError::new(
                    ErrorReason::PermissionDenied,
                    format!(
                        "cannot read {}: permission denied; run the exporter as the application's user (or with CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE)",
                        shown.display()
                    ),
                ));
            }
            Err(e) => return Err(ChainError::new(ErrorReason::Io, format!("cannot read {}: {e}", shown.display()))),
        };
        let text = std::str::from_utf8(&text).map_err(|_| {
            ChainError::new(ErrorReason::Malformed, format!("{} is not UTF-8 text; botocore fails to parse it", shown.display()))
        })?;
        Self::parse(text, shown).map(Some)
    }

    /// Parses INI text; `shown` names the file in errors.
    pub fn parse(text: &str, shown: &Path) -> Result<IniFile, ChainError> {
        let (cleaned, continued) = python_lines(text).map_err(|e| match e {
            LineError::Malformed(line) => ChainError::new(
                ErrorReason::Malformed,
                format!(
                    "{} line {line} is not a [section] header, a key = value pair or an indented continuation; botocore and the SDK for Java refuse the file",
                    shown.display()
                ),
            ),
            LineError::TooMany => ChainError::new(
                ErrorReason::Malformed,
                format!(
                    "{} has more than {MAX_ENTRIES} section headers and keys, more than the exporter reads (real profile files have a few hundred)",
                    shown.display()
                ),
            ),
        })?;
        let options = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let parsed = ini::Ini::load_from_str_opt(&cleaned, options)
            .map_err(|e| ChainError::new(ErrorReason::Malformed, format!("{} is not a valid profile file: {e}", shown.display())))?;

        let mut file = IniFile { path: shown.to_path_buf(), ..Default::default() };
        // Consume the parse so values move (not copy) into `Value`, whose secrets are zeroed on drop.
        for (name, properties) in parsed {
            let Some(name) = name else {
                file.keys_outside_sections |= !properties.is_empty();
                continue;
            };
            let mut section = Section::default();
            for (key, value) in properties {
                // `python_lines` leaves rust-ini no line to run into the next; should one
                // still, the key could swallow `aws_secret_access_key` and leave its value unmarked.
                if key.contains(['\n', '\r']) {
                    return Err(ChainError::new(ErrorReason::Malformed, format!("{} is not a valid profile file", shown.display())));
                }
                let key = key.trim().to_ascii_lowercase();
                // A continuation is not always visible in the value (`role_arn =` with
                // nothing after it, then an indented line), so the lines say which keys had one.
                let secret = !shown_value(&key, &value) || continued.contains(&key);
                if section.values.insert(key.clone(), Value::new(value, secret)).is_some() {
                    file.duplicates.push(format!("[{name}] {key}"));
                }
            }
            match file.sections.get_mut(&name) {
                Some(existing) => {
                    file.duplicates.push(format!("[{name}]"));
                    existing.merge_from(&section);
                }
                None => {
                    file.sections.insert(name, section);
                }
            }
        }
        Ok(file)
    }

    /// Profiles of a config file: `[profile NAME]` and `[default]`.
    pub fn config_profiles(&self) -> BTreeMap<String, Section> {
        let mut out = BTreeMap::new();
        if let Some(default) = self.sections.get("default") {
            out.insert("default".to_string(), default.clone());
        }
        // `[profile default]` replaces `[default]` (SDK for Java v2 ProfileFileReader).
        for (name, section) in &self.sections {
            if let Some(profile) = prefixed(name, "profile") {
                out.insert(profile, section.clone());
            }
        }
        out
    }

    /// `[sso-session NAME]` sections of a config file.
    pub fn sso_sessions(&self) -> BTreeMap<String, Section> {
        self.sections.iter().filter_map(|(name, s)| prefixed(name, "sso-session").map(|n| (n, s.clone()))).collect()
    }
}

/// The lines of `text` as Python's `RawConfigParser` reads them (botocore
/// `raw_config_parse`), rewritten so that rust-ini reads them the same way:
/// comments blanked, headers as `[name]`, key lines unindented, continuation
/// lines (indented deeper than their key line) indented by one space, and a
/// space after a line-ending backslash, which rust-ini would take as joining
/// the next line (Python has no escapes; trailing spaces are trimmed either way).
/// Line breaks are `\n`, `\r\n` or `\r` (Python's universal newlines).
/// Returns the text and the (lowercased) keys that have a continuation line
/// somewhere in the file, or the number of the first line Python refuses:
/// neither a header, nor `key = value`, nor a continuation; also headers whose
/// name holds `]` or `\` and keys ending in `\`, which rust-ini would misread.
fn python_lines(text: &str) -> Result<(Zeroizing<String>, BTreeSet<String>), LineError> {
    let mut entries = 0;
    let mut continued = BTreeSet::new();
    let mut key_name = String::new();
    let unified = Zeroizing::new(text.replace("\r\n", "\n"));
    let mut out = Zeroizing::new(String::with_capacity(unified.len() + 64));
    // Indentation of the current key line while its value may continue.
    let mut key_indent: Option<usize> = None;
    for (i, line) in unified.split(['\n', '\r']).enumerate() {
        let stripped = line.trim();
        let indent = line.len() - line.trim_start().len();
        if stripped.is_empty() || stripped.starts_with(['#', ';']) {
            // Blank and comment lines neither end a value nor add to it (Python's empty_lines_in_values).
        } else if key_indent.is_some_and(|k| indent > k) {
            continued.insert(key_name.clone());
            out.push(' ');
            out.push_str(stripped);
        } else if stripped.starts_with('[') {
            // SECTCRE `\[(?P<header>.+)\]`: up to the last `]`, the rest of the line ignored.
            let name = stripped.rfind(']').filter(|&end| end > 1).map(|end| &stripped[1..end]).ok_or(LineError::Malformed(i + 1))?;
            if name.contains([']', '\\']) {
                return Err(LineError::Malformed(i + 1));
            }
            entries += 1;
            out.push('[');
            out.push_str(name);
            out.push(']');
            key_indent = None;
        } else {
            // OPTCRE: the key is everything before the first `=` or `:`, and not empty.
            let at = stripped.find(['=', ':']).ok_or(LineError::Malformed(i + 1))?;
            let key = stripped[..at].trim_end();
            if key.is_empty() || key.ends_with('\\') {
                return Err(LineError::Malformed(i + 1));
            }
            entries += 1;
            key_name = key.trim().to_ascii_lowercase();
            out.push_str(stripped);
            key_indent = Some(indent);
        }
        if entries > MAX_ENTRIES {
            return Err(LineError::TooMany);
        }
        if out.ends_with('\\') {
            out.push(' ');
        }
        out.push('\n');
    }
    Ok((out, continued))
}

/// Most section headers and keys read from one file: each costs the INI parser
/// about 600 bytes, so 10,000 keep a file's parse near 8 MiB, where 100,000
/// empty sections (1 MiB of text) took 60 MiB.
pub const MAX_ENTRIES: usize = 10_000;

/// Why [`python_lines`] refuses a text.
enum LineError {
    /// The number of the first line Python refuses.
    Malformed(usize),
    /// More than [`MAX_ENTRIES`] headers and keys.
    TooMany,
}

/// `NAME` of a `PREFIX NAME` section header; botocore splits the header with
/// `shlex`, so `[profile "a b"]` names profile `a b` and `[profilex]` is not a profile.
fn prefixed(section: &str, prefix: &str) -> Option<String> {
    let rest = section.strip_prefix(prefix)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = rest.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)) {
            return (!inner.is_empty()).then(|| inner.to_string());
        }
    }
    (!rest.is_empty() && !rest.contains(char::is_whitespace)).then(|| rest.to_string())
}

/// The two shared files of one process, as one SDK locates them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedFiles {
    /// The config file (`AWS_CONFIG_FILE`, default `~/.aws/config`); `None` when absent.
    pub config: Option<IniFile>,
    /// The credentials file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`); `None` when absent.
    pub credentials: Option<IniFile>,
}

impl SharedFiles {
    /// Profiles of the config file.
    pub fn config_profiles(&self) -> BTreeMap<String, Section> {
        self.config.as_ref().map(IniFile::config_profiles).unwrap_or_default()
    }

    /// Profiles of the credentials file, by literal section name.
    pub fn credentials_profiles(&self) -> BTreeMap<String, Section> {
        self.credentials.as_ref().map(|f| f.sections.clone()).unwrap_or_default()
    }

    /// Both files' profiles merged, the credentials file's keys winning.
    pub fn profiles(&self) -> BTreeMap<String, Section> {
        let mut merged = self.config_profiles();
        for (name, section) in self.credentials_profiles() {
            merged.entry(name).or_default().merge_from(&section);
        }
        merged
    }

    /// `[sso-session NAME]` sections of the config file.
    pub fn sso_sessions(&self) -> BTreeMap<String, Section> {
        self.config.as_ref().map(IniFile::sso_sessions).unwrap_or_default()
    }

    /// Why botocore would refuse to parse one of the files (strict `RawConfigParser`).
    pub fn python_parse_error(&self) -> Option<String> {
        [&self.config, &self.credentials].into_iter().flatten().find_map(|f| {
            if f.keys_outside_sections {
                Some(format!("{} has keys before its first [section]", f.path.display()))
            } else {
                f.duplicates.first().map(|d| format!("{} defines {d} twice", f.path.display()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";

    fn parse(text: &str) -> IniFile {
        IniFile::parse(text, Path::new("/home/u/.aws/config")).unwrap()
    }

    #[test]
    fn config_sections_follow_the_profile_rules() {
        let file = parse(
            "[default]\nregion = eu-west-1\n\n[profile dev]\nrole_arn = arn:aws:iam::1:role/dev\nsource_profile = default\n\
             [preview]\nx = 1\n[profilex]\ny = 2\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
             [profile   spaced]\nregion=a\n[profile \"quoted name\"]\nregion=b\n",
        );
        let profiles = file.config_profiles();
        assert_eq!(profiles.keys().collect::<Vec<_>>(), ["default", "dev", "quoted name", "spaced"]);
        assert_eq!(profiles["dev"].get("source_profile"), Some("default"));
        assert_eq!(file.sso_sessions().keys().collect::<Vec<_>>(), ["corp"]);
    }

    #[test]
    fn profile_default_wins_over_default_in_the_config_file() {
        let file = parse("[profile default]\nregion = b\n[default]\nregion = a\n");
        assert_eq!(file.config_profiles()["default"].get("region"), Some("b"));
    }

    #[test]
    fn credentials_file_keys_win_when_merged() {
        let files = SharedFiles {
            config: Some(parse("[profile app]\nregion = a\naws_access_key_id = AKIACONFIG\n")),
            credentials: Some(parse(&format!(
                "[app]\naws_access_key_id = AKIACREDS\naws_secret_access_key = {SECRET}\n[profile app]\nregion = literal\n"
            ))),
        };
        let merged = files.profiles();
        assert_eq!(merged["app"].get("aws_access_key_id"), Some("AKIACREDS"));
        assert_eq!(merged["app"].get("region"), Some("a"));
        assert!(merged.contains_key("profile app"), "credentials file names are literal");
        assert!(matches!(merged["app"].values["aws_secret_access_key"], Value::Secret(_)));
        assert!(!format!("{files:?}").contains(SECRET));
    }

    #[test]
    fn parses_like_python_raw_config_parser() {
        let file = parse(
            "# comment\n  ; indented comment\n[Default]\nAWS_Access_Key_ID : AKIA1\nvalue = has # no inline comment\n\
             path = C:\\Users\\x \"quoted\"\ns3 =\n  addressing_style = path\n  max_concurrent_requests = 20\nregion = eu-west-1\n",
        );
        let s = &file.sections["Default"];
        assert_eq!(s.get("aws_access_key_id"), Some("AKIA1"), "keys are lowercased, ':' is a delimiter");
        assert_eq!(s.get("value"), Some("has # no inline comment"));
        assert_eq!(s.get("path"), Some("C:\\Users\\x \"quoted\""), "no escapes, no quote stripping");
        assert!(s.get("s3").is_some_and(|v| v.contains("addressing_style")), "nested block stays one value");
        assert_eq!(s.get("region"), Some("eu-west-1"));
        assert!(!file.sections.contains_key("default"), "section names are case-sensitive");
    }

    #[test]
    fn duplicates_and_orphan_keys_are_noted_for_botocore() {
        let file = parse("[a]\nx = 1\n[a]\nx = 2\n");
        assert_eq!(file.sections["a"].get("x"), Some("2"));
        assert!(!file.duplicates.is_empty());
        let files = SharedFiles { config: Some(file), credentials: None };
        assert!(files.python_parse_error().unwrap().contains("twice"));
        let orphan = parse("x = 1\n[a]\ny = 2\n");
        assert!(orphan.keys_outside_sections);
    }

    #[test]
    fn malformed_files_are_an_error_without_their_content() {
        let err = IniFile::parse(&format!("[a]\naws_secret_access_key = {SECRET}\n[broken\n"), Path::new("/c")).unwrap_err();
        assert_eq!(err.reason, ErrorReason::Malformed);
        assert!(!err.to_string().contains(SECRET));
    }

    #[test]
    fn a_stray_bracket_does_not_turn_a_secret_into_a_plain_value() {
        for (text, line) in [
            (format!("[default]\n]\naws_secret_access_key = {SECRET}\n"), 2),
            (format!("[default]\njunk without a delimiter\naws_secret_access_key = {SECRET}\n"), 2),
            (format!("[default]\n :\naws_secret_access_key = {SECRET}\n"), 2),
            (format!("[default]]\naws_secret_access_key = {SECRET}\n"), 1),
            (format!("[default\\]\naws_secret_access_key = {SECRET}\n[other]\n"), 1),
            (format!("[default]\nkey\\= x\naws_secret_access_key = {SECRET}\n"), 2),
        ] {
            let err = IniFile::parse(&text, Path::new("/c")).unwrap_err();
            assert_eq!(err.reason, ErrorReason::Malformed, "{text}");
            assert!(err.to_string().contains(&format!("line {line} is not a [section] header")), "{err}");
            assert!(!format!("{err} {err:?}").contains(SECRET));
        }
    }

    #[test]
    fn lines_are_read_as_python_reads_them_and_secrets_stay_marked() {
        let cases = [
            // Keys indented alike are two keys, not a continuation.
            (format!("[p]\n  region = a\n  aws_secret_access_key = {SECRET}\n"), "a"),
            // A line-ending backslash joins nothing.
            (format!("[p]\nregion = C:\\dir\\\naws_secret_access_key = {SECRET}\n"), "C:\\dir\\"),
            // `\r` alone breaks lines (universal newlines).
            (format!("[p]\rregion = a\raws_secret_access_key = {SECRET}\r"), "a"),
            // A header is up to its `]`; what follows on its line is ignored.
            (format!("  [p]  \nregion = a\n\n  # comment\naws_secret_access_key = {SECRET}\n"), "a"),
        ];
        for (text, region) in cases {
            let file = parse(&text);
            let p = &file.sections["p"];
            assert_eq!(p.get("region"), Some(region), "{text:?}");
            assert!(matches!(p.values["aws_secret_access_key"], Value::Secret(_)), "{text:?}");
            assert!(!format!("{file:?}").contains(SECRET), "{text:?}");
        }
        let nested = parse("[p]\ns3 =\n  addressing_style = path\n\n  max = 20\nregion = b\n");
        assert_eq!(nested.sections["p"].get("s3"), Some("addressing_style = path\n\nmax = 20"), "as botocore, less its leading newline");
        assert_eq!(nested.sections["p"].get("region"), Some("b"));
    }

    /// Issue 12: `source_profile = base` then `  aws_session_token = ...` is one
    /// value for Python, secret included; no value on a continuation line, and
    /// no value of a key off the allow-list, is ever shown.
    #[test]
    fn continued_and_unlisted_values_are_never_shown() {
        for key in ["source_profile", "role_arn", "region", "sso_session", "x_security_token_expires", "external_id", "s3"] {
            let file = parse(&format!("[p]\n{key} = base\n  aws_session_token = {SECRET}\nexternal_id = {SECRET}\noutput = json\n"));
            let p = &file.sections["p"];
            assert!(p.get(key).is_some_and(|v| v.contains(SECRET)), "the SDK still sees the whole value of {key}");
            assert!(matches!(p.values[key], Value::Secret(_)), "{key}");
            assert_eq!(p.shown(key), Shown::Hidden, "{key}");
            assert_eq!(p.shown("external_id"), Shown::Hidden, "not on the allow-list");
            let printed = format!("{file:?} {} {:?} {:?}", p.shown(key), p.shown(key), p.expiry());
            assert!(!printed.contains(SECRET), "{key}: {printed}");
        }
        let empty_first_line = parse(&format!("[p]\nrole_arn =\n  aws_session_token = {SECRET}\n"));
        assert_eq!(empty_first_line.sections["p"].shown("role_arn"), Shown::Hidden, "no line break left in the value");
        let plain = parse("[p]\nregion = eu-west-1\nrole_arn = arn:aws:iam::1:role/r\n");
        assert_eq!(plain.sections["p"].shown("region").to_string(), "eu-west-1");
        assert_eq!(format!("{:?}", plain.sections["p"].shown("role_arn")), "\"arn:aws:iam::1:role/r\"");
    }

    #[test]
    fn missing_files_are_no_profiles() {
        assert_eq!(IniFile::load(Path::new("/nonexistent/.aws/credentials"), Path::new("~/.aws/credentials")).unwrap(), None);
        assert_eq!(IniFile::load(Path::new("/"), Path::new("/")).unwrap(), None, "a directory is no file");
        assert_eq!(IniFile::load(Path::new("/dev/zero"), Path::new("/dev/zero")).unwrap(), None, "a device is never read");
    }

    #[test]
    fn expiry_fields_written_by_tools_parse() {
        let cases = [
            ("x_security_token_expires = 2026-11-28T23:00:00+01:00", "x_security_token_expires", "2026-11-28T22:00:00+00:00"),
            ("aws_expiration = 2026-11-28T22:00:00Z", "aws_expiration", "2026-11-28T22:00:00+00:00"),
            ("expiration = 2026-11-28 22:00:00", "expiration", "2026-11-28T22:00:00+00:00"),
            ("x_security_token_expires = 2026-11-28T22:00:00+0000", "x_security_token_expires", "2026-11-28T22:00:00+00:00"),
        ];
        for (line, key, want) in cases {
            let file = parse(&format!("[p]\n{line}\n"));
            let (k, t) = file.sections["p"].expiry().unwrap();
            assert_eq!((k, t.unwrap().to_rfc3339()), (key, want.to_string()), "{line}");
        }
        let file = parse("[p]\nexpiration = soon\n");
        assert!(file.sections["p"].expiry().unwrap().1.is_err());
        let both = parse("[p]\nexpiration = 2020-01-01 00:00:00\nx_security_token_expires = 2030-01-01T00:00:00Z\n");
        assert_eq!(both.sections["p"].expiry().unwrap().0, "x_security_token_expires");
    }
}

/// Properties of [`IniFile::parse`] on untrusted text (see `crate::fuzzing`).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{corpus, fuzz};

    /// Marks every secret the strategies generate.
    const MARK: &str = "FuzzSecretValue";

    /// Keys that hold secrets.
    const SECRET_KEYS: [&str; 3] = ["aws_secret_access_key", "aws_session_token", "aws_security_token"];

    /// Everything the parse exposes to callers that may print it.
    fn exercise(file: &IniFile) -> String {
        let files = SharedFiles { config: Some(file.clone()), credentials: Some(file.clone()) };
        let mut out = format!("{file:?} {:?} {:?} {:?}", files.profiles(), files.sso_sessions(), files.python_parse_error());
        for section in file.sections.values() {
            out.push_str(&format!("{:?}", section.expiry()));
        }
        out
    }

    #[test]
    fn fuzz_arbitrary_text_never_panics() {
        fuzz(file!(), ".{0,600}", |text| {
            if let Ok(file) = IniFile::parse(&text, Path::new("/f")) {
                exercise(&file);
            }
            Ok(())
        });
    }

    const KEYS: [&str; 12] = [
        "region",
        "role_arn",
        "source_profile",
        "credential_process",
        "aws_access_key_id",
        "sso_session",
        "x_security_token_expires",
        "aws_expiration",
        "expiration",
        "s3",
        "web_identity_token_file",
        "output",
    ];

    fn any_case(s: &str) -> impl Strategy<Value = String> + use<> {
        let s = s.to_string();
        prop::collection::vec(any::<bool>(), s.len())
            .prop_map(move |up| s.chars().zip(up).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c }).collect())
    }

    /// One line of a profile file, and the secret it holds, if any.
    fn line() -> impl Strategy<Value = (String, Option<String>)> {
        let name = prop_oneof![
            Just("default".to_string()),
            "[a-z-]{1,8}".prop_map(|n| format!("profile {n}")),
            "[a-z ]{0,8}".prop_map(|n| format!("profile \"{n}\"")),
            "[a-z]{1,8}".prop_map(|n| format!("sso-session {n}")),
            "[^\r\n]{0,12}",
        ];
        let value = prop_oneof![
            "[^\r\n]{0,30}",
            "[^\r\n]{0,10}\\\\",
            Just("2026-11-28T23:00:00Z".to_string()),
            Just("2026-11-28 23:00:00".to_string()),
        ];
        let delimiter = prop_oneof![Just("="), Just(" = "), Just(":"), Just(" : "), Just("\t=\t")];
        let plain = (prop::sample::select(&KEYS[..]).prop_flat_map(any_case), delimiter.clone(), value, "[ \t]{0,1}")
            .prop_map(|(k, d, v, indent)| (format!("{indent}{k}{d}{v}"), None));
        let secret = (prop::sample::select(&SECRET_KEYS[..]).prop_flat_map(any_case), delimiter.clone(), "[A-Za-z0-9/+]{0,20}").prop_map(
            |(k, d, v)| {
                let v = format!("{MARK}{v}");
                (format!("{k}{d}{v}"), Some(v))
            },
        );
        // A continuation line under any key: one value for Python, never shown.
        let continued = (
            prop::sample::select(&KEYS[..]).prop_flat_map(any_case),
            delimiter.clone(),
            "[^\r\n]{0,10}",
            "[ \t]{1,3}",
            "[A-Za-z0-9/+= ]{0,20}",
        )
            .prop_map(|(k, d, v, indent, rest)| {
                let secret = format!("{MARK}{rest}");
                (format!("{k}{d}{v}\n{indent}aws_session_token = {secret}"), Some(secret.trim_end().to_string()))
            });
        // Keys indented alike under a header: two keys for Python, so the secret stays one.
        let indented_pair = ("[ \t]{1,3}", secret.clone(), delimiter).prop_map(|(indent, (secret_line, s), d)| {
            (format!("[profile indented]\n{indent}region{d}eu-west-1\n{indent}{secret_line}"), s)
        });
        prop_oneof![
            2 => (name, "[ ]{0,1}", prop::bool::weighted(0.95)).prop_map(|(n, pad, closed)| (format!("{pad}[{n}]{}", if closed { "]" } else { "" }), None)),
            4 => plain,
            2 => secret,
            1 => indented_pair,
            2 => continued,
            1 => "[ \t]{0,2}[#;][^\r\n]{0,20}".prop_map(|c| (c, None)),
            1 => Just((String::new(), None)),
            1 => "[ \t]{1,3}[^\r\n]{0,20}".prop_map(|c| (c, None)),
            1 => "[^\r\n]{0,30}".prop_map(|j| (j, None)),
        ]
    }

    /// INI-like text: headers, keys, secrets, comments, continuations and junk, LF or CRLF.
    fn profile_file() -> impl Strategy<Value = (String, Vec<String>)> {
        (prop::collection::vec(line(), 0..24), any::<bool>()).prop_map(|(lines, crlf)| {
            let secrets = lines.iter().filter_map(|(_, s)| s.clone()).collect();
            let text = lines.into_iter().map(|(l, _)| l).collect::<Vec<_>>().join(if crlf { "\r\n" } else { "\n" });
            (text, secrets)
        })
    }

    #[test]
    fn fuzz_profile_files_never_panic_nor_print_a_secret() {
        fuzz(file!(), profile_file(), |(text, secrets)| {
            let printed = match IniFile::parse(&text, Path::new("/home/u/.aws/credentials")) {
                Ok(file) => exercise(&file),
                Err(e) => format!("{e} {e:?}"),
            };
            for s in &secrets {
                prop_assert!(!printed.contains(s.as_str()), "secret {s:?} printed: {printed}");
            }
            Ok(())
        });
    }

    /// The hand-kept corpus parses or fails without a panic, and nothing
    /// marked `CorpusSecret` is printed.
    #[test]
    fn corpus_profile_files_never_panic_nor_print_a_secret() {
        for (path, bytes) in corpus("profile") {
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            let printed = match IniFile::parse(text, &path) {
                Ok(file) => exercise(&file),
                Err(e) => format!("{e} {e:?}"),
            };
            assert!(!printed.contains("CorpusSecret"), "{}: {printed}", path.display());
        }
    }
}
