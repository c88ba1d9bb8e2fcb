//! Credential provider chain evaluation: which provider an application's SDK
//! would take its credentials from, and which configurations lead to
//! `ExpiredToken` (an earlier provider shadowing the instance profile, session
//! tokens that nothing refreshes, a proxy in front of IMDS). Pure: it reads
//! files and `/proc`, never the network; [`evaluate`] returns plain data.
//!
//! Orders and names come from the SDKs' sources, read for this module:
//! - AWS SDK for Java v2 `DefaultCredentialsProvider.createChain`:
//!   `SystemPropertyCredentialsProvider`, `EnvironmentVariableCredentialsProvider`,
//!   `WebIdentityTokenFileCredentialsProvider`, `ProfileCredentialsProvider`,
//!   `ContainerCredentialsProvider`, `InstanceProfileCredentialsProvider`; names in
//!   `SdkSystemSetting` (`aws.accessKeyId`, `aws.secretAccessKey`, `aws.sessionToken`,
//!   `aws.webIdentityTokenFile`, `aws.roleArn`, ...) and `ProfileFileSystemSetting`
//!   (`aws.profile`/`AWS_PROFILE`, `aws.configFile`, `aws.sharedCredentialsFile`).
//!   `AwsCredentialsProviderChain` catches every provider's exception and tries the next.
//! - AWS SDK for Java v1 `DefaultAWSCredentialsProviderChain`:
//!   `EnvironmentVariableCredentialsProvider`, `SystemPropertiesCredentialsProvider`,
//!   `WebIdentityTokenCredentialsProvider`, `ProfileCredentialsProvider`,
//!   `EC2ContainerCredentialsProviderWrapper` (the container endpoint when
//!   `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`/`FULL_URI` is set, else IMDS, never both);
//!   names in `SDKGlobalConfiguration` (`AWS_ACCESS_KEY`, `AWS_SECRET_KEY`,
//!   `aws.secretKey`, `com.amazonaws.sdk.disableEc2Metadata`), `AwsProfileNameLoader`
//!   (`AWS_PROFILE` before `aws.profile`), `CredentialsEnvVarOverrideLocationProvider`
//!   (`AWS_CREDENTIAL_PROFILES_FILE`; v1 ignores `AWS_SHARED_CREDENTIALS_FILE`).
//! - botocore `credentials.py` `create_credential_resolver`: `env`, `assume-role`,
//!   then `ProfileProviderBuilder.providers` (`assume-role-with-web-identity`, `sso`,
//!   `shared-credentials-file`, `login`, `custom-process`, `config-file`), then
//!   `ec2-credentials-file`, `boto-config`, `container-role`, `iam-role`;
//!   `CredentialResolver.load_credentials` stops at the first provider that returns
//!   credentials *or raises* (e.g. `PartialCredentialsError`). Profile name from
//!   `configprovider.py` (`AWS_DEFAULT_PROFILE` before `AWS_PROFILE`).

pub mod env;
pub mod profile;
pub mod proxy;
pub mod targets;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

pub use env::{ProcessEnv, Value, find_processes};
use profile::{IniFile, Section, SharedFiles};
pub use targets::{ChainConfig, ChainProbe, ChainRound, ProcessTarget, SELF_TARGET, TargetReport};

use crate::secret::{Secret, key_id_suffix};

/// Which SDK's default chain to emulate (`--chain.sdk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sdk {
    /// AWS SDK for Java 2.x (`java-v2`, the default).
    JavaV2,
    /// AWS SDK for Java 1.x (`java-v1`).
    JavaV1,
    /// botocore: boto3 and the AWS CLI (`python`).
    Python,
}

impl Sdk {
    /// Every SDK.
    pub const ALL: [Sdk; 3] = [Sdk::JavaV2, Sdk::JavaV1, Sdk::Python];

    /// Stable name, as `--chain.sdk` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sdk::JavaV2 => "java-v2",
            Sdk::JavaV1 => "java-v1",
            Sdk::Python => "python",
        }
    }

    /// Parses [`Sdk::as_str`] names.
    pub fn from_name(name: &str) -> Option<Sdk> {
        Sdk::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Where credentials come from; the `provider` label value is [`Provider::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Java system properties `-Daws.accessKeyId=...` (Java SDKs only).
    SystemProperties,
    /// `AWS_ACCESS_KEY_ID` and friends.
    Environment,
    /// `AssumeRoleWithWebIdentity` with `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS IRSA).
    WebIdentity,
    /// The shared config and credentials files: static keys, and for botocore
    /// also `role_arn` (`assume-role`), `config-file`, `ec2-credentials-file`, `boto-config`;
    /// for the Java SDKs every kind of profile (their one `ProfileCredentialsProvider`).
    Profile,
    /// `credential_process` in a profile (botocore `custom-process`).
    Process,
    /// IAM Identity Center (`sso_*` in a profile); also botocore's `login` (`login_session`).
    Sso,
    /// ECS task role / EKS Pod Identity endpoint (`AWS_CONTAINER_CREDENTIALS_*_URI`).
    Container,
    /// The EC2 instance profile through IMDS.
    InstanceProfile,
    /// No provider supplies credentials: the SDK fails.
    None,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 9] = [
        Provider::SystemProperties,
        Provider::Environment,
        Provider::WebIdentity,
        Provider::Profile,
        Provider::Process,
        Provider::Sso,
        Provider::Container,
        Provider::InstanceProfile,
        Provider::None,
    ];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::SystemProperties => "system_properties",
            Provider::Environment => "environment",
            Provider::WebIdentity => "web_identity",
            Provider::Profile => "profile",
            Provider::Process => "process",
            Provider::Sso => "sso",
            Provider::Container => "container",
            Provider::InstanceProfile => "instance_profile",
            Provider::None => "none",
        }
    }
}

/// One provider of an SDK's chain under the SDK's own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The class or botocore `METHOD` name.
    pub sdk_name: &'static str,
    /// What it is reported as.
    pub provider: Provider,
}

const fn step(sdk_name: &'static str, provider: Provider) -> Step {
    Step { sdk_name, provider }
}

const JAVA_V2_STEPS: [Step; 6] = [
    step("SystemPropertyCredentialsProvider", Provider::SystemProperties),
    step("EnvironmentVariableCredentialsProvider", Provider::Environment),
    step("WebIdentityTokenFileCredentialsProvider", Provider::WebIdentity),
    step("ProfileCredentialsProvider", Provider::Profile),
    step("ContainerCredentialsProvider", Provider::Container),
    step("InstanceProfileCredentialsProvider", Provider::InstanceProfile),
];

const JAVA_V1_STEPS: [Step; 6] = [
    step("EnvironmentVariableCredentialsProvider", Provider::Environment),
    step("SystemPropertiesCredentialsProvider", Provider::SystemProperties),
    step("WebIdentityTokenCredentialsProvider", Provider::WebIdentity),
    step("ProfileCredentialsProvider", Provider::Profile),
    step("EC2ContainerCredentialsProviderWrapper (container)", Provider::Container),
    step("EC2ContainerCredentialsProviderWrapper (instance profile)", Provider::InstanceProfile),
];

const PYTHON_STEPS: [Step; 12] = [
    step("env", Provider::Environment),
    step("assume-role", Provider::Profile),
    step("assume-role-with-web-identity", Provider::WebIdentity),
    step("sso", Provider::Sso),
    step("shared-credentials-file", Provider::Profile),
    step("login", Provider::Sso),
    step("custom-process", Provider::Process),
    step("config-file", Provider::Profile),
    step("ec2-credentials-file", Provider::Profile),
    step("boto-config", Provider::Profile),
    step("container-role", Provider::Container),
    step("iam-role", Provider::InstanceProfile),
];

/// The SDK's chain under its own names, in the order it is tried.
pub fn steps(sdk: Sdk) -> &'static [Step] {
    match sdk {
        Sdk::JavaV2 => &JAVA_V2_STEPS,
        Sdk::JavaV1 => &JAVA_V1_STEPS,
        Sdk::Python => &PYTHON_STEPS,
    }
}

const JAVA_V2_CHAIN: [Provider; 6] = [
    Provider::SystemProperties,
    Provider::Environment,
    Provider::WebIdentity,
    Provider::Profile,
    Provider::Container,
    Provider::InstanceProfile,
];
const JAVA_V1_CHAIN: [Provider; 6] = [
    Provider::Environment,
    Provider::SystemProperties,
    Provider::WebIdentity,
    Provider::Profile,
    Provider::Container,
    Provider::InstanceProfile,
];
/// botocore's `assume-role` (a profile's `role_arn`) is tried before web identity,
/// so `profile` is listed there; its static keys come later (see [`steps`]).
const PYTHON_CHAIN: [Provider; 7] = [
    Provider::Environment,
    Provider::Profile,
    Provider::WebIdentity,
    Provider::Sso,
    Provider::Process,
    Provider::Container,
    Provider::InstanceProfile,
];

/// The providers of an SDK's default chain, each once, in the order first tried.
pub fn chain(sdk: Sdk) -> &'static [Provider] {
    match sdk {
        Sdk::JavaV2 => &JAVA_V2_CHAIN,
        Sdk::JavaV1 => &JAVA_V1_CHAIN,
        Sdk::Python => &PYTHON_CHAIN,
    }
}

/// Why the exporter could not read something; `aws_credentials_chain_errors_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// No permission (another user's process or file).
    PermissionDenied,
    /// The process is gone.
    NotFound,
    /// A file that cannot be parsed.
    Malformed,
    /// Any other read failure.
    Io,
}

impl ErrorReason {
    /// Every reason, so that each target's counters exist from the start.
    pub const ALL: [ErrorReason; 4] = [ErrorReason::PermissionDenied, ErrorReason::NotFound, ErrorReason::Malformed, ErrorReason::Io];

    /// The probe contract's kind of this reason.
    pub fn kind(self) -> crate::probe::ErrorKind {
        use crate::probe::ErrorKind;
        match self {
            ErrorReason::PermissionDenied => ErrorKind::PermissionDenied,
            ErrorReason::NotFound => ErrorKind::NotFound,
            ErrorReason::Malformed => ErrorKind::Malformed,
            ErrorReason::Io => ErrorKind::Io,
        }
    }

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::PermissionDenied => "permission_denied",
            ErrorReason::NotFound => "not_found",
            ErrorReason::Malformed => "malformed",
            ErrorReason::Io => "io",
        }
    }
}

/// Something the exporter could not read, with what to do about it; never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChainError {
    /// Kind, for the metric label.
    pub reason: ErrorReason,
    /// What failed, where, and what to do.
    pub message: String,
}

impl ChainError {
    /// A new error.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// The container credentials endpoint a process would call, for the caller to
/// fetch (with the IMDS client's rules) to learn the credentials' `Expiration`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEndpoint {
    /// Full URI, e.g. `http://169.254.170.2/v2/credentials/...`.
    pub uri: String,
    /// `Authorization` header value, from `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`.
    pub authorization: Option<Secret>,
    /// The variable the URI came from.
    pub source: &'static str,
}

/// What one provider of the chain would do.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderState {
    /// Which provider.
    pub provider: Provider,
    /// Its configuration is there (a variable, property, profile key or IMDS role).
    pub present: bool,
    /// The SDK would take credentials from it if it got this far (`aws_credentials_provider_present`).
    pub usable: bool,
    /// How the SDK fails on this configuration, e.g. "AWS_ACCESS_KEY_ID set without AWS_SECRET_ACCESS_KEY".
    pub partial: Option<String>,
    /// The credentials carry a session token configured statically (variable, property, profile key).
    pub session_token: bool,
    /// When the credentials expire, where knowable: `AWS_CREDENTIAL_EXPIRATION`,
    /// profile expiry keys ([`profile::EXPIRY_KEYS`]), the web identity token's `exp`.
    pub expiration: Option<DateTime<Utc>>,
    /// Last (at most) four characters of the access key id.
    pub key_id_suffix: Option<String>,
    /// What was found, for logs and the report; never a secret.
    pub detail: String,
}

/// The evaluated chain of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainObservation {
    /// Which SDK's chain.
    pub sdk: Sdk,
    /// The profile the SDK would use.
    pub profile: String,
    /// One per provider of [`chain`], in order.
    pub providers: Vec<ProviderState>,
    /// The provider the SDK takes credentials from; [`Provider::None`] when none, or when it fails first.
    pub active: Provider,
    /// The SDK raises at this provider and tries no further one (botocore), so `active` is `none`.
    pub stopped_at: Option<Provider>,
    /// IMDS has a role, but an earlier provider wins (or fails first).
    pub instance_profile_shadowed: bool,
    /// The winning credentials carry a session token that nothing refreshes
    /// (environment, system properties, static profile keys).
    pub static_session_token: bool,
    /// `HTTP_PROXY`/`http_proxy` is set and `NO_PROXY`/`no_proxy` does not cover
    /// IMDS for botocore or curl (see [`proxy`]); the SDKs for Java never proxy IMDS.
    pub proxy_bypass_missing: bool,
    /// What could not be read.
    pub errors: Vec<ChainError>,
    /// The container endpoint to fetch, when the container provider is configured.
    pub container: Option<ContainerEndpoint>,
}

impl ChainObservation {
    /// The state of `provider`, when it is part of the chain.
    pub fn state(&self, provider: Provider) -> Option<&ProviderState> {
        self.providers.iter().find(|p| p.provider == provider)
    }
}

/// Container endpoint for relative URIs (botocore `ContainerMetadataFetcher.IP_ADDRESS`,
/// SDK for Java `AWS_CONTAINER_SERVICE_ENDPOINT` default).
pub const CONTAINER_ENDPOINT: &str = "http://169.254.170.2";
/// Hosts a full container URI may name over plain HTTP besides loopback
/// (botocore `ContainerMetadataFetcher._ALLOWED_HOSTS`: ECS, EKS Pod Identity).
const CONTAINER_HOSTS: [&str; 3] = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"];
/// `credential_source` values (botocore `CanonicalNameCredentialSourcer`, Java `CredentialSourceType`).
const CREDENTIAL_SOURCES: [&str; 3] = ["Environment", "Ec2InstanceMetadata", "EcsContainer"];

/// Evaluates `sdk`'s default chain for a process. `imds_has_role` is what the
/// IMDS probe found (`None`: unknown); `now` judges token expiry.
pub fn evaluate(sdk: Sdk, env: &ProcessEnv, imds_has_role: Option<bool>, now: DateTime<Utc>) -> ChainObservation {
    let mut ctx = Ctx::new(sdk, env, imds_has_role, now);
    let mut container = None;
    let evals: Vec<(Step, Eval)> = steps(sdk)
        .iter()
        .map(|&s| {
            let eval = match s.provider {
                Provider::Container => {
                    let (eval, endpoint) = ctx.container();
                    container = endpoint;
                    eval
                }
                Provider::InstanceProfile => ctx.instance_profile(),
                _ => ctx.step(s.sdk_name),
            };
            (s, eval)
        })
        .collect();

    let mut active = Provider::None;
    let mut stopped_at = None;
    let mut decisive = None;
    let pre_chain_failure = ctx.python_pre_chain_failure();
    if pre_chain_failure.is_some() {
        stopped_at = Some(Provider::Profile);
    } else {
        for (i, (s, e)) in evals.iter().enumerate() {
            if e.state.usable {
                active = s.provider;
                decisive = Some(i);
                break;
            }
            if e.stops {
                stopped_at = Some(s.provider);
                decisive = Some(i);
                break;
            }
        }
    }

    let mut providers: Vec<ProviderState> = chain(sdk)
        .iter()
        .map(|&p| {
            let mine: Vec<(usize, &Eval)> =
                evals.iter().enumerate().filter(|(_, (s, _))| s.provider == p).map(|(i, (_, e))| (i, e)).collect();
            let pick = mine
                .iter()
                .find(|(i, _)| Some(*i) == decisive)
                .or_else(|| mine.iter().find(|(_, e)| e.state.usable))
                .or_else(|| mine.iter().find(|(_, e)| e.state.present))
                .or(mine.first())
                .map(|(_, e)| e.state.clone());
            pick.unwrap_or_else(|| Eval::absent(p, "not part of this chain").state)
        })
        .collect();
    if let Some(reason) = pre_chain_failure
        && let Some(state) = providers.iter_mut().find(|s| s.provider == Provider::Profile)
    {
        state.present = true;
        state.partial = Some(reason);
    }

    let winner = decisive.map(|i| &evals[i].1).filter(|e| e.state.usable);
    ChainObservation {
        sdk,
        profile: ctx.profile.clone(),
        providers,
        active,
        stopped_at,
        instance_profile_shadowed: imds_has_role == Some(true)
            && active != Provider::InstanceProfile
            && (active != Provider::None || stopped_at.is_some()),
        static_session_token: winner.is_some_and(|e| e.static_keys && e.state.session_token),
        proxy_bypass_missing: proxy::imds_proxy(env).any(),
        errors: ctx.errors,
        container,
    }
}

/// Decodes the `exp` claim of a JWT (web identity token) without checking its
/// signature; errors never quote the token.
pub fn jwt_expiry(token: &str) -> Result<DateTime<Utc>, String> {
    let payload = token.trim().split('.').nth(1).ok_or("not a JWT: no payload part")?;
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = Zeroizing::new(engine.decode(payload).map_err(|_| "JWT payload is not base64url")?);
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| "JWT payload is not JSON")?;
    let exp = claims.as_object().ok_or("JWT payload is not a JSON object")?.get("exp").ok_or("JWT has no exp claim")?;
    let seconds = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64)).ok_or("JWT exp is not a number of seconds")?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| "JWT exp is out of range".to_string())
}

/// One step's result before the chain is decided.
struct Eval {
    state: ProviderState,
    /// The SDK raises here: no later provider is tried.
    stops: bool,
    /// Static keys (environment, properties, profile keys): nothing refreshes them.
    static_keys: bool,
}

impl Eval {
    fn new(provider: Provider, present: bool, usable: bool, detail: impl Into<String>) -> Self {
        Eval {
            state: ProviderState {
                provider,
                present,
                usable,
                partial: None,
                session_token: false,
                expiration: None,
                key_id_suffix: None,
                detail: detail.into(),
            },
            stops: false,
            static_keys: false,
        }
    }

    fn absent(provider: Provider, detail: impl Into<String>) -> Self {
        Eval::new(provider, false, false, detail)
    }

    fn win(provider: Provider, detail: impl Into<String>) -> Self {
        Eval::new(provider, true, true, detail)
    }

    /// Present but refused; the SDK moves on to the next provider.
    fn skip(provider: Provider, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut e = Eval::new(provider, true, false, reason.clone());
        e.state.partial = Some(reason);
        e
    }

    /// Present but refused; the SDK raises and tries no further provider.
    fn stop(provider: Provider, reason: impl Into<String>) -> Self {
        let mut e = Eval::skip(provider, reason);
        e.stops = true;
        e
    }

    /// Java SDKs skip what botocore raises on.
    fn refuse(sdk: Sdk, provider: Provider, reason: impl Into<String>) -> Self {
        if sdk == Sdk::Python { Eval::stop(provider, reason) } else { Eval::skip(provider, reason) }
    }

    /// Static keys: records the key id suffix and flags key/token mismatches
    /// that make every request fail although the SDK selects the provider.
    fn static_keys(provider: Provider, key_id: &str, token: Option<&str>, detail: String) -> Self {
        let mut e = Eval::win(provider, detail);
        e.static_keys = true;
        e.state.session_token = token.is_some();
        let key = key_id.trim();
        // Access key ids are letters and digits; anything else (a value continued
        // onto an indented line that holds a secret) shows no characters at all.
        e.state.key_id_suffix = key.chars().all(|c| c.is_ascii_alphanumeric()).then(|| key_id_suffix(key));
        if key.starts_with("ASIA") && token.is_none() {
            e.state.partial =
                Some("temporary access key id (ASIA...) without a session token: every request fails with InvalidClientTokenId".into());
        } else if key.starts_with("AKIA") && token.is_some() {
            e.state.partial =
                Some("long-term access key id (AKIA...) with a session token: AWS rejects the token (InvalidClientTokenId)".into());
        }
        e
    }

    fn expiring(mut self, expiration: Option<DateTime<Utc>>) -> Self {
        self.state.expiration = expiration;
        self
    }

    fn note(mut self, note: impl AsRef<str>) -> Self {
        self.state.detail = format!("{}; {}", self.state.detail, note.as_ref());
        self
    }
}

/// A file the SDK would read could not be read.
enum ReadFailure {
    /// It does not exist: the SDK fails too (message for `partial`).
    Missing(String),
    /// The exporter may not read it (error recorded); the SDK may well.
    Unreadable,
}

/// Inputs shared by the steps of one evaluation.
struct Ctx<'a> {
    sdk: Sdk,
    env: &'a ProcessEnv,
    /// What the IMDS probe found (`None`: unknown).
    imds_has_role: Option<bool>,
    now: DateTime<Utc>,
    files: SharedFiles,
    /// A profile file that could not be parsed (botocore raises `ConfigParseError`).
    malformed: Option<String>,
    profile: String,
    /// The variable or property that named the profile.
    profile_source: Option<&'static str>,
    errors: Vec<ChainError>,
}

impl<'a> Ctx<'a> {
    fn new(sdk: Sdk, env: &'a ProcessEnv, imds_has_role: Option<bool>, now: DateTime<Utc>) -> Self {
        let mut ctx = Ctx {
            sdk,
            env,
            imds_has_role,
            now,
            files: SharedFiles::default(),
            malformed: None,
            profile: String::new(),
            profile_source: None,
            errors: Vec::new(),
        };
        let (profile, source) = ctx.profile_name();
        ctx.profile = profile;
        ctx.profile_source = source;
        ctx.load_files();
        ctx
    }

    /// A Java `SystemSetting`: the system property, else the environment variable.
    fn java_setting(&self, property: &str, variable: &str) -> Option<&'a str> {
        self.env.prop(property).or_else(|| self.env.var(variable))
    }

    /// Trimmed, non-empty: how the Java SDKs read credentials (`StringUtils.trim`, `isEmpty`).
    fn java_value(value: Option<&str>) -> Option<&str> {
        value.map(str::trim).filter(|v| !v.is_empty())
    }

    fn profile_name(&self) -> (String, Option<&'static str>) {
        let env = self.env;
        let found: Option<(&str, &'static str)> = match self.sdk {
            // configprovider.py: 'profile': (None, ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE'], ...)
            Sdk::Python => env
                .var("AWS_DEFAULT_PROFILE")
                .map(|v| (v, "AWS_DEFAULT_PROFILE"))
                .or_else(|| env.var("AWS_PROFILE").map(|v| (v, "AWS_PROFILE"))),
            // ProfileFileSystemSetting.AWS_PROFILE("aws.profile", "default"): property, then variable.
            Sdk::JavaV2 => {
                env.prop("aws.profile").map(|v| (v, "aws.profile")).or_else(|| env.var("AWS_PROFILE").map(|v| (v, "AWS_PROFILE")))
            }
            // AwsProfileNameLoader: AWS_PROFILE, then aws.profile ("kept for backwards compatibility").
            Sdk::JavaV1 => Self::java_value(env.var("AWS_PROFILE"))
                .map(|v| (v, "AWS_PROFILE"))
                .or_else(|| Self::java_value(env.prop("aws.profile")).map(|v| (v, "aws.profile"))),
        };
        match found {
            Some((name, source)) => (name.to_string(), Some(source)),
            None => ("default".to_string(), None),
        }
    }

    /// Expands a leading `~` with `home`, as `os.path.expanduser` and Java v2's `ProfileFileLocation` do.
    fn expand(raw: &str, home: Option<&Path>) -> PathBuf {
        match (raw.strip_prefix('~'), home) {
            (Some(""), Some(home)) => home.to_path_buf(),
            (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
            _ => PathBuf::from(raw),
        }
    }

    fn load_files(&mut self) {
        let env = self.env;
        let home = env.home.as_deref();
        let (config, credentials): (Option<PathBuf>, Option<PathBuf>) = match self.sdk {
            Sdk::Python => (
                Some(Self::expand(env.var("AWS_CONFIG_FILE").unwrap_or("~/.aws/config"), home)),
                Some(Self::expand(env.var("AWS_SHARED_CREDENTIALS_FILE").unwrap_or("~/.aws/credentials"), home)),
            ),
            Sdk::JavaV2 => (
                Some(Self::expand(self.java_setting("aws.configFile", "AWS_CONFIG_FILE").unwrap_or("~/.aws/config"), home)),
                Some(Self::expand(
                    self.java_setting("aws.sharedCredentialsFile", "AWS_SHARED_CREDENTIALS_FILE").unwrap_or("~/.aws/credentials"),
                    home,
                )),
            ),
            // One file: AWS_CREDENTIAL_PROFILES_FILE, else ~/.aws/credentials, else the
            // legacy ~/.aws/config (CredentialsLegacyConfigLocationProvider), with the
            // JVM's user.home (the passwd entry unless -Duser.home), not HOME.
            Sdk::JavaV1 => {
                let home = env.prop("user.home").map(PathBuf::from).or_else(|| env.passwd_home.clone());
                let file = match env.var("AWS_CREDENTIAL_PROFILES_FILE") {
                    Some(path) => Some(PathBuf::from(path)),
                    None => home.map(|h| {
                        let credentials = h.join(".aws/credentials");
                        if env.host_path(&credentials).is_ok_and(|p| p.is_file()) { credentials } else { h.join(".aws/config") }
                    }),
                };
                (None, file)
            }
        };
        self.files.config = config.and_then(|p| self.load_ini(&p));
        self.files.credentials = credentials.and_then(|p| self.load_ini(&p));
    }

    fn load_ini(&mut self, path: &Path) -> Option<IniFile> {
        let loaded = match self.env.host_path(path) {
            Ok(host_path) => IniFile::load(&host_path, path),
            Err(e) => Err(ChainError::new(ErrorReason::Io, format!("cannot read {}: {e}", path.display()))),
        };
        match loaded {
            Ok(file) => file,
            Err(e) => {
                if e.reason == ErrorReason::Malformed {
                    self.malformed.get_or_insert_with(|| e.message.clone());
                }
                self.errors.push(e);
                None
            }
        }
    }

    /// botocore resolves the scoped config before any provider runs: a file it
    /// cannot parse, or a named profile that exists nowhere, fails `get_credentials()` outright.
    fn python_pre_chain_failure(&self) -> Option<String> {
        if self.sdk != Sdk::Python {
            return None;
        }
        if let Some(m) = self.malformed.clone().or_else(|| self.files.python_parse_error()) {
            return Some(format!("{m}: botocore raises ConfigParseError before trying any provider"));
        }
        let source = self.profile_source?;
        let unreadable = self.errors.iter().any(|e| e.reason == ErrorReason::PermissionDenied);
        (!unreadable && !self.files.profiles().contains_key(&self.profile)).then(|| {
            format!(
                "{source} names profile {:?}, which is in neither file: botocore raises ProfileNotFound before trying any provider",
                self.profile
            )
        })
    }

    /// Reads a file named by the process's configuration (a token file) into
    /// zeroed memory; `raw` is shown as `shown` in messages.
    fn read_file(&mut self, raw: &str, shown: &str, what: &str) -> Result<Zeroizing<String>, ReadFailure> {
        let path = Path::new(raw);
        match self.env.host_path(path).and_then(|p| crate::fsread::read(&p, crate::fsread::MAX_CONFIG_FILE)) {
            Ok(bytes) => Ok(Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadFailure::Missing(format!("{what} {shown} does not exist"))),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(ReadFailure::Missing(format!("{what} {shown} is not a regular file"))),
            Err(e) => {
                let reason = if e.kind() == io::ErrorKind::PermissionDenied { ErrorReason::PermissionDenied } else { ErrorReason::Io };
                self.errors.push(ChainError::new(
                    reason,
                    format!("cannot read {what} {shown}: {e}; run the exporter as the application's user (or with CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE)"),
                ));
                Err(ReadFailure::Unreadable)
            }
        }
    }

    fn step(&mut self, sdk_name: &str) -> Eval {
        match (self.sdk, sdk_name) {
            (Sdk::Python, "env") => self.python_env(),
            (Sdk::Python, "assume-role") => self.python_assume_role(),
            (Sdk::Python, "assume-role-with-web-identity") => self.web_identity(),
            (Sdk::Python, "sso") => self.python_sso(),
            (Sdk::Python, "shared-credentials-file") => {
                let profiles = self.files.credentials_profiles();
                let shown = self.files.credentials.as_ref().map(|f| f.path.clone());
                Self::python_static_profile(profiles.get(&self.profile), &self.profile, shown, "shared-credentials-file")
            }
            (Sdk::Python, "login") => match self.files.profiles().get(&self.profile) {
                Some(p) if p.has("login_session") => {
                    Eval::win(Provider::Sso, format!("profile {:?}: login_session (`aws login`; needs botocore[crt])", self.profile))
                }
                _ => Eval::absent(Provider::Sso, "no login_session"),
            },
            (Sdk::Python, "custom-process") => match self.files.profiles().get(&self.profile) {
                Some(p) if p.has("credential_process") => {
                    Eval::win(Provider::Process, format!("profile {:?}: credential_process", self.profile))
                }
                _ => Eval::absent(Provider::Process, "no credential_process"),
            },
            (Sdk::Python, "config-file") => {
                let profiles = self.files.config_profiles();
                let shown = self.files.config.as_ref().map(|f| f.path.clone());
                Self::python_static_profile(profiles.get(&self.profile), &self.profile, shown, "config-file")
            }
            (Sdk::Python, "ec2-credentials-file") => self.python_ec2_credentials_file(),
            (Sdk::Python, "boto-config") => self.python_boto_config(),
            (_, "EnvironmentVariableCredentialsProvider") => self.java_env(),
            (_, "SystemPropertyCredentialsProvider" | "SystemPropertiesCredentialsProvider") => self.java_system_properties(),
            (_, "WebIdentityTokenFileCredentialsProvider" | "WebIdentityTokenCredentialsProvider") => self.web_identity(),
            (Sdk::JavaV2, "ProfileCredentialsProvider") => self.java_v2_profile(),
            (Sdk::JavaV1, "ProfileCredentialsProvider") => self.java_v1_profile(),
            (_, other) => unreachable!("no evaluation for step {other}"),
        }
    }

    // ---- environment and system properties ----

    /// botocore `EnvProvider.load`: nothing without a non-empty `AWS_ACCESS_KEY_ID`;
    /// with it, a missing `AWS_SECRET_ACCESS_KEY` raises `PartialCredentialsError`.
    fn python_env(&self) -> Eval {
        let set = |name: &str| self.env.var(name).filter(|v| !v.is_empty());
        let Some(key) = set("AWS_ACCESS_KEY_ID") else {
            if set("AWS_SECRET_ACCESS_KEY").is_some() {
                return Eval::skip(
                    Provider::Environment,
                    "AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID: botocore ignores the environment",
                );
            }
            return Eval::absent(Provider::Environment, "AWS_ACCESS_KEY_ID not set");
        };
        if set("AWS_SECRET_ACCESS_KEY").is_none() {
            return Eval::stop(
                Provider::Environment,
                "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY: botocore raises PartialCredentialsError and tries no other provider",
            );
        }
        // TOKENS = ['AWS_SECURITY_TOKEN', 'AWS_SESSION_TOKEN']: the first non-empty one.
        let token = ["AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"].into_iter().find(|t| set(t).is_some());
        let detail = match token {
            Some(t) => format!("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and {t}"),
            None => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
        };
        let (expiration, note) = self.env_expiration();
        let e = Eval::static_keys(Provider::Environment, key, token, detail).expiring(expiration);
        match note {
            Some(n) => e.note(n),
            None => e,
        }
    }

    /// `AWS_CREDENTIAL_EXPIRATION` (written by `aws configure export-credentials`).
    fn env_expiration(&self) -> (Option<DateTime<Utc>>, Option<String>) {
        match self.env.var("AWS_CREDENTIAL_EXPIRATION").filter(|v| !v.trim().is_empty()) {
            None => (None, None),
            Some(v) => match profile::parse_expiry(v) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(format!("AWS_CREDENTIAL_EXPIRATION is {e}"))),
            },
        }
    }

    /// SDK for Java v2 `SystemSettingsCredentialsProvider` over the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` only), and
    /// v1 `EnvironmentVariableCredentialsProvider` (also `AWS_ACCESS_KEY`, `AWS_SECRET_KEY`;
    /// no `AWS_SECURITY_TOKEN`). Both throw on incomplete keys and the chain moves on.
    fn java_env(&self) -> Eval {
        let var = |name: &str| Self::java_value(self.env.var(name));
        let (key, secret, key_names, secret_names) = match self.sdk {
            Sdk::JavaV1 => (
                // `System.getenv(ACCESS_KEY_ENV_VAR)`, the alternate only when the first is unset.
                Self::java_value(self.env.var("AWS_ACCESS_KEY_ID").or_else(|| self.env.var("AWS_ACCESS_KEY"))),
                Self::java_value(self.env.var("AWS_SECRET_KEY").or_else(|| self.env.var("AWS_SECRET_ACCESS_KEY"))),
                "AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY)",
                "AWS_SECRET_KEY (or AWS_SECRET_ACCESS_KEY)",
            ),
            _ => (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        };
        let token = var("AWS_SESSION_TOKEN");
        let aliases =
            ["AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SECURITY_TOKEN"].into_iter().filter(|n| var(n).is_some()).collect::<Vec<_>>();
        let Some(key) = key else {
            if secret.is_some() || token.is_some() || !aliases.is_empty() {
                let mut reason = format!("{secret_names} or AWS_SESSION_TOKEN set without {key_names}: the SDK skips the environment");
                if self.sdk == Sdk::JavaV2 && !aliases.is_empty() {
                    reason += &format!(" ({} are not read by SDK for Java v2)", aliases.join(", "));
                }
                return Eval::skip(Provider::Environment, reason);
            }
            return Eval::absent(Provider::Environment, format!("{key_names} not set"));
        };
        if secret.is_none() {
            let mut reason = format!("{key_names} set without {secret_names}: the SDK skips the environment");
            if self.sdk == Sdk::JavaV2 && var("AWS_SECRET_KEY").is_some() {
                reason += " (AWS_SECRET_KEY is read by SDK for Java v1 only)";
            }
            return Eval::skip(Provider::Environment, reason);
        }
        let detail = format!("{key_names} and {secret_names}{}", if token.is_some() { " with AWS_SESSION_TOKEN" } else { "" });
        let (expiration, note) = self.env_expiration();
        let mut e = Eval::static_keys(Provider::Environment, key, token, detail).expiring(expiration);
        if token.is_none() && var("AWS_SECURITY_TOKEN").is_some() {
            e = e.note("AWS_SECURITY_TOKEN is not read by the SDKs for Java (use AWS_SESSION_TOKEN)");
        }
        if let Some(n) = note {
            e = e.note(n);
        }
        e
    }

    /// SDK for Java v2 `SystemPropertyCredentialsProvider` (`aws.accessKeyId`,
    /// `aws.secretAccessKey`, `aws.sessionToken`) and v1 `SystemPropertiesCredentialsProvider`
    /// (`aws.accessKeyId`, `aws.secretKey`, `aws.sessionToken`): the secret's name differs.
    fn java_system_properties(&self) -> Eval {
        let prop = |name: &str| Self::java_value(self.env.prop(name));
        let (secret_name, other_name, other_sdk) = match self.sdk {
            Sdk::JavaV1 => ("aws.secretKey", "aws.secretAccessKey", "v2"),
            _ => ("aws.secretAccessKey", "aws.secretKey", "v1"),
        };
        let key = prop("aws.accessKeyId");
        let secret = prop(secret_name);
        let token = prop("aws.sessionToken");
        let Some(key) = key else {
            if secret.is_some() || token.is_some() || prop(other_name).is_some() {
                return Eval::skip(
                    Provider::SystemProperties,
                    format!("{secret_name} or aws.sessionToken set without aws.accessKeyId: the SDK skips system properties"),
                );
            }
            return Eval::absent(Provider::SystemProperties, "aws.accessKeyId not set");
        };
        if secret.is_none() {
            let mut reason = format!("aws.accessKeyId set without {secret_name}: the SDK skips system properties");
            if prop(other_name).is_some() {
                reason += &format!(" ({other_name} is the SDK for Java {other_sdk} name)");
            }
            return Eval::skip(Provider::SystemProperties, reason);
        }
        let detail = format!("-Daws.accessKeyId and -D{secret_name}{}", if token.is_some() { " with -Daws.sessionToken" } else { "" });
        Eval::static_keys(Provider::SystemProperties, key, token, detail)
    }

    // ---- web identity ----

    /// Token file and role ARN: botocore takes each from the environment, else
    /// from the profile (`AssumeRoleWithWebIdentityProvider._get_config`) and raises
    /// `InvalidConfigError` without a role; SDK for Java v2 reads `aws.webIdentityTokenFile`/
    /// `aws.roleArn` or the variables, v1 only the variables, and both skip when either is missing.
    fn web_identity(&mut self) -> Eval {
        let p = Provider::WebIdentity;
        // The token file's path, as it may be shown: a profile's value can run onto a continuation line.
        let mut shown_file = None;
        let (token_file, role) = match self.sdk {
            Sdk::Python => {
                let profiles = self.files.profiles();
                let profile = profiles.get(&self.profile);
                let from = |var: &str, key: &str| {
                    self.env.var(var).map(str::to_string).or_else(|| profile.and_then(|p| p.get(key)).map(str::to_string))
                };
                if self.env.var("AWS_WEB_IDENTITY_TOKEN_FILE").is_none() {
                    shown_file = profile.map(|p| p.shown("web_identity_token_file").to_string());
                }
                (from("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file"), from("AWS_ROLE_ARN", "role_arn"))
            }
            Sdk::JavaV2 => (
                Self::java_value(self.java_setting("aws.webIdentityTokenFile", "AWS_WEB_IDENTITY_TOKEN_FILE")).map(str::to_string),
                Self::java_value(self.java_setting("aws.roleArn", "AWS_ROLE_ARN")).map(str::to_string),
            ),
            Sdk::JavaV1 => (
                Self::java_value(self.env.var("AWS_WEB_IDENTITY_TOKEN_FILE")).map(str::to_string),
                Self::java_value(self.env.var("AWS_ROLE_ARN")).map(str::to_string),
            ),
        };
        let token_file = token_file.filter(|t| !t.is_empty());
        let role = role.filter(|r| !r.is_empty());
        let Some(token_file) = token_file else {
            if role.is_some() && self.sdk != Sdk::Python {
                return Eval::skip(p, "AWS_ROLE_ARN set without AWS_WEB_IDENTITY_TOKEN_FILE: the SDK skips web identity");
            }
            return Eval::absent(p, "AWS_WEB_IDENTITY_TOKEN_FILE not set");
        };
        if role.is_none() {
            return Eval::refuse(
                self.sdk,
                p,
                match self.sdk {
                    Sdk::Python => "web identity token file configured without a role ARN: botocore raises InvalidConfigError",
                    _ => "AWS_WEB_IDENTITY_TOKEN_FILE set without AWS_ROLE_ARN: the SDK skips web identity",
                },
            );
        }
        let shown_file = shown_file.unwrap_or_else(|| token_file.clone());
        let mut detail = format!("token file {shown_file}");
        if self.sdk != Sdk::Python {
            detail += " (needs the sts module on the classpath)";
        }
        self.token_file_eval(p, &token_file, &shown_file, detail)
    }

    /// Reads a web identity token for its `exp`. Java resolves eagerly and skips a
    /// provider whose token is missing or expired; botocore has already chosen it
    /// (deferred credentials) and fails at the first request.
    fn token_file_eval(&mut self, p: Provider, token_file: &str, shown_file: &str, detail: String) -> Eval {
        let fail = |sdk: Sdk, why: String| {
            if sdk == Sdk::Python {
                let mut e = Eval::win(p, detail.clone());
                e.state.partial = Some(format!("{why}: botocore selects web identity and fails at the first request"));
                e
            } else {
                Eval::skip(p, format!("{why}: the SDK skips this provider"))
            }
        };
        match self.read_file(token_file, shown_file, "web identity token file") {
            Err(ReadFailure::Missing(why)) => fail(self.sdk, why),
            Err(ReadFailure::Unreadable) => {
                Eval::win(p, detail.clone()).note("token expiry unknown: the exporter cannot read the token file")
            }
            Ok(token) => match jwt_expiry(&token) {
                Ok(exp) if exp <= self.now => {
                    let mut e = fail(
                        self.sdk,
                        format!("web identity token expired at {}; is the projected token still refreshed?", exp.to_rfc3339()),
                    );
                    e.state.expiration = Some(exp);
                    e
                }
                Ok(exp) => Eval::win(p, detail.clone()).expiring(Some(exp)),
                Err(why) => Eval::win(p, detail.clone()).note(format!("token expiry unknown: {why}")),
            },
        }
    }

    // ---- profiles, botocore ----

    /// botocore `AssumeRoleProvider`: a `role_arn` (without `web_identity_token_file`)
    /// in the merged profile; its source is resolved at load, and every
    /// configuration problem raises.
    fn python_assume_role(&self) -> Eval {
        let profiles = self.files.profiles();
        let Some(p) = profiles.get(&self.profile) else { return Eval::absent(Provider::Profile, format!("no profile {:?}", self.profile)) };
        if !has_assume_role_vars(p) {
            return Eval::absent(Provider::Profile, format!("profile {:?} has no role_arn", self.profile));
        }
        let mut visited = vec![self.profile.clone()];
        match self.python_role_source(&profiles, &self.profile, &mut visited) {
            Ok(source) => {
                Eval::win(Provider::Profile, format!("profile {:?}: assume role {} from {source}", self.profile, p.shown("role_arn")))
            }
            Err(why) => Eval::stop(Provider::Profile, why),
        }
    }

    /// botocore `AssumeRoleProvider._get_role_config` and `_resolve_source_credentials`.
    fn python_role_source(&self, profiles: &BTreeMap<String, Section>, name: &str, visited: &mut Vec<String>) -> Result<String, String> {
        let p = &profiles[name];
        match (p.get("source_profile"), p.get("credential_source")) {
            (Some(_), Some(_)) => {
                Err(format!("profile {name:?} has both source_profile and credential_source: botocore raises InvalidConfigError"))
            }
            (None, None) => Err(format!(
                "profile {name:?} sets role_arn without source_profile or credential_source: botocore raises PartialCredentialsError"
            )),
            (None, Some(source)) if !CREDENTIAL_SOURCES.contains(&source) => Err(format!(
                "profile {name:?}: credential_source {:?} is not one of {CREDENTIAL_SOURCES:?}: botocore raises InvalidConfigError",
                p.shown("credential_source")
            )),
            (None, Some(source)) => self.python_credential_source(name, source),
            (Some(source), None) => {
                let Some(sp) = profiles.get(source) else {
                    return Err(format!(
                        "source_profile {:?} of profile {name:?} does not exist: botocore raises InvalidConfigError",
                        p.shown("source_profile")
                    ));
                };
                // A profile may name itself only to use its own static keys.
                if visited.iter().any(|v| v == source) && (source != name || !has_static_keys(sp)) {
                    return Err(format!("source_profile loop through {visited:?}: botocore raises InfiniteLoopConfigError"));
                }
                visited.push(source.to_string());
                if has_static_keys(sp) || !has_assume_role_vars(sp) {
                    match self.python_profile_providers(source, sp)? {
                        Some(kind) => Ok(format!("profile {source:?} ({kind})")),
                        None => Err(format!("source profile {source:?} has no credentials: botocore raises InvalidConfigError")),
                    }
                } else {
                    self.python_role_source(profiles, source, visited).map(|s| format!("profile {source:?} assuming a role from {s}"))
                }
            }
        }
    }

    /// botocore `AssumeRoleProvider._resolve_credentials_from_source`: the named
    /// provider is loaded at once, and when it finds nothing, botocore raises
    /// `CredentialRetrievalError` (the chain stops; no later provider is tried).
    fn python_credential_source(&self, name: &str, source: &str) -> Result<String, String> {
        let fails = |why: &str| {
            Err(format!(
                "profile {name:?}: credential_source {source} finds no credentials ({why}): botocore raises CredentialRetrievalError"
            ))
        };
        match source {
            // `env` ran before `assume-role`: keys there would have won already.
            "Environment" if !self.python_env().state.usable => fails("no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "Ec2InstanceMetadata" if self.imds_disabled() => fails("AWS_EC2_METADATA_DISABLED=true"),
            "Ec2InstanceMetadata" if self.imds_has_role == Some(false) => fails("no instance profile attached"),
            "EcsContainer"
                if self.env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
                    && self.env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none() =>
            {
                fails("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI not set")
            }
            _ => Ok(format!("credential_source {source}")),
        }
    }

    /// `ProfileProviderBuilder.providers(source, disable_env_vars=True)` for a source profile.
    fn python_profile_providers(&self, name: &str, p: &Section) -> Result<Option<&'static str>, String> {
        if p.non_empty("web_identity_token_file") {
            return if p.non_empty("role_arn") {
                Ok(Some("web identity"))
            } else {
                Err(format!("profile {name:?} has web_identity_token_file without role_arn"))
            };
        }
        if p.has("sso_role_name") || p.has("sso_account_id") {
            return self.python_sso_config(name, p).map(|_| Some("sso"));
        }
        let credentials = self.files.credentials_profiles();
        if let Some(s) = credentials.get(name).filter(|s| s.has("aws_access_key_id")) {
            return if s.has("aws_secret_access_key") {
                Ok(Some("static keys"))
            } else {
                Err(partial_profile(name, "shared-credentials-file"))
            };
        }
        if p.has("login_session") {
            return Ok(Some("login_session"));
        }
        if p.has("credential_process") {
            return Ok(Some("credential_process"));
        }
        let config = self.files.config_profiles();
        if let Some(s) = config.get(name).filter(|s| s.has("aws_access_key_id")) {
            return if s.has("aws_secret_access_key") { Ok(Some("static keys")) } else { Err(partial_profile(name, "config-file")) };
        }
        Ok(None)
    }

    /// botocore `SSOProvider`: used when `sso_role_name` or `sso_account_id` is set.
    fn python_sso(&self) -> Eval {
        let profiles = self.files.profiles();
        match profiles.get(&self.profile) {
            Some(p) if p.has("sso_role_name") || p.has("sso_account_id") => match self.python_sso_config(&self.profile, p) {
                Ok(detail) => Eval::win(Provider::Sso, detail),
                Err(why) => Eval::stop(Provider::Sso, why),
            },
            _ => Eval::absent(Provider::Sso, "no sso_role_name/sso_account_id"),
        }
    }

    /// `SSOProvider._load_sso_config`: resolves `sso_session` and requires the SSO keys.
    fn python_sso_config(&self, name: &str, p: &Section) -> Result<String, String> {
        let mut resolved = p.clone();
        let mut required = vec!["sso_role_name", "sso_account_id", "sso_start_url", "sso_region"];
        if let Some(session) = p.get("sso_session") {
            let sessions = self.files.sso_sessions();
            let Some(s) = sessions.get(session) else {
                return Err(format!(
                    "profile {name:?}: sso-session {:?} does not exist: botocore raises InvalidConfigError",
                    p.shown("sso_session")
                ));
            };
            for (k, v) in &s.values {
                if resolved.get(k).is_some_and(|mine| mine != v.expose()) {
                    return Err(format!(
                        "profile {name:?}: {k} differs between the profile and sso-session {session:?}: botocore raises InvalidConfigError"
                    ));
                }
                resolved.values.insert(k.clone(), v.clone());
            }
            required.push("sso_session");
        }
        let missing: Vec<&str> = required.into_iter().filter(|k| !resolved.has(k)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "profile {name:?} is configured for SSO but lacks {}: botocore raises InvalidConfigError",
                missing.join(", ")
            ));
        }
        Ok(format!(
            "profile {name:?}: SSO role {} in account {}{}",
            resolved.shown("sso_role_name"),
            resolved.shown("sso_account_id"),
            if p.has("sso_session") { format!(" (sso-session {})", p.shown("sso_session")) } else { String::new() }
        ))
    }

    /// botocore `SharedCredentialProvider` / `ConfigProvider`: static keys in one file;
    /// a key id without a secret raises `PartialCredentialsError`.
    fn python_static_profile(section: Option<&Section>, name: &str, shown: Option<PathBuf>, method: &str) -> Eval {
        let p = Provider::Profile;
        let Some(s) = section.filter(|s| s.has("aws_access_key_id")) else {
            return Eval::absent(p, format!("{method}: no aws_access_key_id in profile {name:?}"));
        };
        if !s.has("aws_secret_access_key") {
            return Eval::stop(
                p,
                format!("{}: botocore raises PartialCredentialsError and tries no other provider", partial_profile(name, method)),
            );
        }
        // TOKENS = ['aws_security_token', 'aws_session_token']
        // The first key present wins even when empty; an empty token signs nothing (`if credentials.token:`).
        let token = ["aws_security_token", "aws_session_token"].into_iter().find(|k| s.has(k)).filter(|k| s.non_empty(k));
        let file = shown.map(|f| f.display().to_string()).unwrap_or_default();
        let detail = format!("profile {name:?} in {file}: static keys{}", token.map(|t| format!(" with {t}")).unwrap_or_default());
        static_profile_eval(s, token, detail)
    }

    /// botocore `OriginalEC2Provider`: `AWS_CREDENTIAL_FILE` with `AWSAccessKeyId=`/`AWSSecretKey=` lines.
    fn python_ec2_credentials_file(&mut self) -> Eval {
        let p = Provider::Profile;
        let Some(raw) = self.env.var("AWS_CREDENTIAL_FILE").map(str::to_string) else {
            return Eval::absent(p, "AWS_CREDENTIAL_FILE not set");
        };
        let path = Self::expand(&raw, self.env.home.as_deref());
        let path = path.to_string_lossy();
        let text = match self.read_file(&path, &path, "AWS_CREDENTIAL_FILE") {
            Ok(t) => t,
            Err(ReadFailure::Missing(why)) => return Eval::stop(p, format!("{why}: botocore raises ConfigNotFound")),
            Err(ReadFailure::Unreadable) => return Eval::absent(p, "AWS_CREDENTIAL_FILE unreadable by the exporter"),
        };
        let value =
            |key: &str| text.lines().filter_map(|l| l.split_once('=')).find(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string());
        let Some(key) = value("AWSAccessKeyId") else { return Eval::absent(p, "AWS_CREDENTIAL_FILE has no AWSAccessKeyId") };
        if value("AWSSecretKey").is_none() {
            return Eval::stop(p, "AWS_CREDENTIAL_FILE has AWSAccessKeyId without AWSSecretKey: botocore raises KeyError");
        }
        Eval::static_keys(p, &key, None, format!("AWS_CREDENTIAL_FILE {raw} (legacy EC2 tools format)"))
    }

    /// botocore `BotoProvider`: `[Credentials]` in `BOTO_CONFIG`, else `/etc/boto.cfg` or `~/.boto`.
    fn python_boto_config(&mut self) -> Eval {
        let p = Provider::Profile;
        let candidates: Vec<PathBuf> = match self.env.var("BOTO_CONFIG") {
            Some(path) => vec![Self::expand(path, self.env.home.as_deref())],
            None => vec![PathBuf::from("/etc/boto.cfg"), Self::expand("~/.boto", self.env.home.as_deref())],
        };
        for path in candidates {
            let loaded = match self.env.host_path(&path) {
                Ok(host_path) => IniFile::load(&host_path, &path),
                Err(e) => Err(ChainError::new(ErrorReason::Io, format!("cannot read {}: {e}", path.display()))),
            };
            let file = match loaded {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) if e.reason == ErrorReason::Malformed => {
                    let why = format!("{e}: botocore raises ConfigParseError");
                    self.errors.push(e);
                    return Eval::stop(p, why);
                }
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            if let Some(s) = file.sections.get("Credentials").filter(|s| s.has("aws_access_key_id")) {
                if !s.has("aws_secret_access_key") {
                    return Eval::stop(
                        p,
                        format!(
                            "{} [Credentials] has aws_access_key_id without aws_secret_access_key: botocore raises PartialCredentialsError",
                            path.display()
                        ),
                    );
                }
                return static_profile_eval(s, None, format!("boto config {} [Credentials]", path.display()));
            }
        }
        Eval::absent(p, "no boto config credentials")
    }

    // ---- profiles, Java ----

    /// SDK for Java v2 `ProfileCredentialsProvider` with `ProfileCredentialsUtils.credentialsProvider`.
    fn java_v2_profile(&mut self) -> Eval {
        let p = Provider::Profile;
        if let Some(m) = &self.malformed {
            return Eval::skip(p, format!("{m}: the SDK skips the profile"));
        }
        let profiles = self.files.profiles();
        let Some(section) = profiles.get(&self.profile) else {
            return self.missing_profile();
        };
        let mut visited = Vec::new();
        match self.java_v2_kind(&profiles, &self.profile, &mut visited) {
            Err(why) => Eval::skip(p, format!("{why}: the SDK skips the profile")),
            Ok(JavaProfile::WebIdentity(token_file, shown)) => {
                let detail = format!("profile {:?}: role_arn with web_identity_token_file {shown}", self.profile);
                let mut e = self.token_file_eval(Provider::WebIdentity, &token_file, &shown, detail);
                e.state.provider = p;
                e
            }
            Ok(JavaProfile::Static { token }) => {
                let token_key = token.then_some("aws_session_token");
                let mut e = static_profile_eval(
                    section,
                    token_key,
                    format!("profile {:?}: static keys{}", self.profile, if token { " with aws_session_token" } else { "" }),
                );
                if !token && section.has("aws_security_token") {
                    e = e.note("aws_security_token is not read by SDK for Java v2 (use aws_session_token)");
                }
                e
            }
            Ok(kind) => Eval::win(p, format!("profile {:?}: {}", self.profile, kind.describe())),
        }
    }

    /// The kind of a profile, in `ProfileCredentialsUtils.credentialsProviderWithFeatureID`'s order.
    fn java_v2_kind(&self, profiles: &BTreeMap<String, Section>, name: &str, children: &mut Vec<String>) -> Result<JavaProfile, String> {
        let p = &profiles[name];
        let require = |keys: &[&str]| match keys.iter().find(|k| !p.has(k)) {
            Some(k) => Err(format!("profile {name:?} lacks {k}")),
            None => Ok(()),
        };
        if p.has("role_arn") && p.has("web_identity_token_file") {
            let file = p.get("web_identity_token_file").unwrap_or_default().to_string();
            return Ok(JavaProfile::WebIdentity(file, p.shown("web_identity_token_file").to_string()));
        }
        if ["sso_role_name", "sso_account_id", "sso_region", "sso_start_url", "sso_session"].iter().any(|k| p.has(k)) {
            require(&["sso_account_id", "sso_role_name"])?;
            match p.get("sso_session") {
                None => require(&["sso_region", "sso_start_url"])?,
                Some(s) if !self.files.sso_sessions().contains_key(s) => {
                    return Err(format!("profile {name:?}: sso-session {:?} does not exist", p.shown("sso_session")));
                }
                Some(_) => {}
            }
            return Ok(JavaProfile::Sso);
        }
        if p.has("role_arn") {
            match (p.get("source_profile"), p.get("credential_source")) {
                (Some(_), Some(_)) => return Err(format!("profile {name:?} has both source_profile and credential_source")),
                (Some(source), None) => {
                    if children.iter().any(|c| c == name) {
                        return Err(format!("circular source_profile through {children:?}"));
                    }
                    children.push(name.to_string());
                    if !profiles.contains_key(source) {
                        return Err(format!("source_profile {:?} of profile {name:?} does not exist", p.shown("source_profile")));
                    }
                    return self.java_v2_kind(profiles, source, children).map(|_| JavaProfile::AssumeRole(format!("profile {source:?}")));
                }
                (None, Some(source)) => {
                    let shown = p.shown("credential_source");
                    return if CREDENTIAL_SOURCES.iter().any(|s| s.eq_ignore_ascii_case(source)) {
                        Ok(JavaProfile::AssumeRole(format!("credential_source {shown}")))
                    } else {
                        Err(format!("profile {name:?}: credential_source {shown:?} is not one of {CREDENTIAL_SOURCES:?}"))
                    };
                }
                (None, None) => {}
            }
        }
        if p.has("credential_process") {
            return Ok(JavaProfile::Process);
        }
        if p.has("aws_session_token") {
            require(&["aws_access_key_id", "aws_secret_access_key"])?;
            return Ok(JavaProfile::Static { token: true });
        }
        if p.has("aws_access_key_id") {
            require(&["aws_secret_access_key"])?;
            return Ok(JavaProfile::Static { token: false });
        }
        Err(format!("profile {name:?} contains no credentials"))
    }

    /// SDK for Java v1 `ProfilesConfigFile.fromProfile`: role, process, else static keys.
    fn java_v1_profile(&mut self) -> Eval {
        let e = self.java_v1_profile_kind();
        if self.env.var("AWS_SHARED_CREDENTIALS_FILE").is_some() && self.env.var("AWS_CREDENTIAL_PROFILES_FILE").is_none() {
            return e.note("AWS_SHARED_CREDENTIALS_FILE is ignored by SDK for Java v1, which reads AWS_CREDENTIAL_PROFILES_FILE");
        }
        e
    }

    fn java_v1_profile_kind(&mut self) -> Eval {
        let p = Provider::Profile;
        let Some(file) = self.files.credentials.clone() else {
            return if self.malformed.is_some() {
                Eval::skip(p, "the profile file cannot be parsed: the SDK skips the profile")
            } else {
                self.missing_profile()
            };
        };
        if let Some(d) = file.duplicates.first() {
            return Eval::skip(p, format!("{} defines {d} twice: SDK for Java v1 refuses the file", file.path.display()));
        }
        let Some(s) = file.sections.get(&self.profile) else { return self.missing_profile() };
        let name = &self.profile;
        let shown = file.path.display();
        if s.has("role_arn") {
            return match (s.get("source_profile"), s.has("credential_source") || s.has("web_identity_token_file")) {
                (Some(source), _) if !file.sections.contains_key(source) => Eval::skip(
                    p,
                    format!(
                        "profile {name:?}: source_profile {:?} is not in {shown}: the SDK skips the profile",
                        s.shown("source_profile")
                    ),
                ),
                (Some(source), _) => {
                    Eval::win(p, format!("profile {name:?} in {shown}: assume role from profile {source:?} (needs the sts module)"))
                }
                (None, true) => Eval::win(p, format!("profile {name:?} in {shown}: assume role (needs the sts module)")),
                (None, false) => Eval::skip(p, format!("profile {name:?} sets role_arn without source_profile: the SDK skips the profile")),
            };
        }
        if s.has("credential_process") {
            return Eval::win(p, format!("profile {name:?} in {shown}: credential_process"));
        }
        if !s.non_empty("aws_access_key_id") || !s.non_empty("aws_secret_access_key") {
            let mut why =
                format!("profile {name:?} in {shown} lacks aws_access_key_id or aws_secret_access_key: the SDK skips the profile");
            if s.has("sso_start_url") || s.has("sso_session") {
                why += " (SDK for Java v1 does not read SSO profiles)";
            }
            return Eval::skip(p, why);
        }
        let token = s.non_empty("aws_session_token").then_some("aws_session_token");
        static_profile_eval(
            s,
            token,
            format!("profile {name:?} in {shown}: static keys{}", if token.is_some() { " with aws_session_token" } else { "" }),
        )
    }

    /// The named profile is in no file: absent when it was only the default, skipped when named.
    fn missing_profile(&self) -> Eval {
        match self.profile_source {
            Some(source) => Eval::skip(
                Provider::Profile,
                format!("{source} names profile {:?}, which is in no profile file: the SDK skips the profile", self.profile),
            ),
            None => Eval::absent(Provider::Profile, format!("no profile {:?}", self.profile)),
        }
    }

    // ---- container and instance profile ----

    /// The container endpoint: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (appended to
    /// `http://169.254.170.2`) wins over `AWS_CONTAINER_CREDENTIALS_FULL_URI`; a full
    /// URI over plain HTTP must name loopback or an ECS/EKS address. The token comes
    /// from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, else `AWS_CONTAINER_AUTHORIZATION_TOKEN`
    /// (botocore `ContainerProvider._build_headers`). Nothing is fetched here.
    fn container(&mut self) -> (Eval, Option<ContainerEndpoint>) {
        let p = Provider::Container;
        let env = self.env;
        let sdk = self.sdk;
        let setting = |prop: &str, var: &str| match sdk {
            Sdk::JavaV2 => env.prop(prop).or_else(|| env.var(var)),
            _ => env.var(var),
        };
        let relative = setting("aws.containerCredentialsPath", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        let full = setting("aws.containerCredentialsFullUri", "AWS_CONTAINER_CREDENTIALS_FULL_URI");
        let (uri, source) = match (relative, full) {
            (Some(rel), _) => {
                let base = match sdk {
                    Sdk::JavaV2 => setting("aws.containerServiceEndpoint", "AWS_CONTAINER_SERVICE_ENDPOINT").unwrap_or(CONTAINER_ENDPOINT),
                    _ => CONTAINER_ENDPOINT,
                };
                (format!("{base}{rel}"), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            }
            (None, Some(full)) => {
                if let Err(why) = check_full_uri(full) {
                    return (Eval::refuse(self.sdk, p, format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {why}")), None);
                }
                (full.to_string(), "AWS_CONTAINER_CREDENTIALS_FULL_URI")
            }
            (None, None) => return (Eval::absent(p, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI not set"), None),
        };
        // Only scheme and host: the path of an ECS relative URI works like a key
        // to the task role's credentials, and a full URI may carry userinfo.
        let mut detail = format!("{source}: {}", redact_uri(&uri));
        let authorization = match env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(file) => match self.read_file(file, file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
                Ok(token) => Some(Secret::new(token.to_string())),
                Err(ReadFailure::Missing(why)) => return (Eval::refuse(self.sdk, p, why), None),
                Err(ReadFailure::Unreadable) => {
                    detail += "; authorization token file unreadable by the exporter";
                    None
                }
            },
            None => setting("aws.containerAuthorizationToken", "AWS_CONTAINER_AUTHORIZATION_TOKEN").map(|t| Secret::new(t.to_string())),
        };
        // botocore `_validate_auth_token`: a CR or LF (e.g. a trailing newline in the token file) is refused.
        if self.sdk == Sdk::Python && authorization.as_ref().is_some_and(|t| t.expose().contains(['\r', '\n'])) {
            return (Eval::stop(p, "the container authorization token contains a line break: botocore raises ValueError"), None);
        }
        let authorization = authorization.map(|t| Secret::new(t.expose().trim().to_string())).filter(|t| !t.is_empty());
        if authorization.is_some() {
            detail += " with an authorization token";
        }
        (Eval::win(p, detail), Some(ContainerEndpoint { uri, authorization, source }))
    }

    /// The SDK never asks IMDS (`AWS_EC2_METADATA_DISABLED` and the Java properties).
    fn imds_disabled(&self) -> bool {
        let is_true = |v: Option<&str>| v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        match self.sdk {
            Sdk::Python => is_true(self.env.var("AWS_EC2_METADATA_DISABLED")),
            Sdk::JavaV2 => is_true(self.java_setting("aws.disableEc2Metadata", "AWS_EC2_METADATA_DISABLED")),
            Sdk::JavaV1 => {
                is_true(self.env.prop("com.amazonaws.sdk.disableEc2Metadata")) || is_true(self.env.var("AWS_EC2_METADATA_DISABLED"))
            }
        }
    }

    /// The instance profile, as far as the IMDS probe and `AWS_EC2_METADATA_DISABLED` tell.
    fn instance_profile(&self) -> Eval {
        let p = Provider::InstanceProfile;
        let disabled = self.imds_disabled();
        if self.sdk == Sdk::JavaV1
            && (self.env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                || self.env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some())
        {
            return Eval::absent(p, "EC2ContainerCredentialsProviderWrapper uses the container endpoint and never IMDS");
        }
        match self.imds_has_role {
            Some(true) if disabled => Eval::skip(p, "IMDS has a role but AWS_EC2_METADATA_DISABLED=true: the SDK never asks IMDS"),
            Some(true) => Eval::win(p, "IMDS has an instance profile role"),
            Some(false) => Eval::absent(p, "no instance profile attached"),
            None if disabled => Eval::absent(p, "AWS_EC2_METADATA_DISABLED=true"),
            None => Eval::absent(p, "whether IMDS has a role is unknown"),
        }
    }
}

/// What a Java v2 profile configures.
enum JavaProfile {
    /// The token file, and how it may be shown.
    WebIdentity(String, String),
    Sso,
    AssumeRole(String),
    Process,
    Static {
        token: bool,
    },
}

impl JavaProfile {
    fn describe(&self) -> String {
        match self {
            JavaProfile::WebIdentity(_, shown) => format!("web identity token file {shown}"),
            JavaProfile::Sso => "SSO (needs the sso and ssooidc modules and a valid `aws sso login` cache)".to_string(),
            JavaProfile::AssumeRole(source) => format!("assume role from {source} (needs the sts module)"),
            JavaProfile::Process => "credential_process".to_string(),
            JavaProfile::Static { .. } => "static keys".to_string(),
        }
    }
}

/// botocore `AssumeRoleProvider._has_static_credentials`.
fn has_static_keys(p: &Section) -> bool {
    p.has("aws_secret_access_key") || p.has("aws_access_key_id")
}

/// botocore `AssumeRoleProvider._has_assume_role_config_vars`.
fn has_assume_role_vars(p: &Section) -> bool {
    p.has("role_arn") && !p.has("web_identity_token_file")
}

fn partial_profile(name: &str, method: &str) -> String {
    format!("{method}: profile {name:?} has aws_access_key_id without aws_secret_access_key")
}

/// Static keys from a profile section, with the expiry a credential tool wrote next to them.
fn static_profile_eval(s: &Section, token_key: Option<&str>, detail: String) -> Eval {
    let key = s.get("aws_access_key_id").unwrap_or_default();
    let mut e = Eval::static_keys(Provider::Profile, key, token_key, detail);
    match s.expiry() {
        Some((_, Ok(t))) => e.state.expiration = Some(t),
        Some((k, Err(why))) => e = e.note(format!("{k} is {why}")),
        None => {}
    }
    e
}

/// A full container URI the SDKs accept: `https`, loopback, or the ECS/EKS
/// addresses (botocore `ContainerMetadataFetcher._validate_allowed_url`).
fn check_full_uri(uri: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(uri).map_err(|_| "is not a URL".to_string())?;
    if url.scheme() == "https" {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback || CONTAINER_HOSTS.contains(&host.as_str()) {
        Ok(())
    } else {
        Err(format!("names host {host:?}; over http only loopback and {CONTAINER_HOSTS:?} are allowed"))
    }
}

/// `scheme://host[:port]/…` of a URI, for reports and logs; `…` when unparseable.
fn redact_uri(uri: &str) -> String {
    match reqwest::Url::parse(uri) {
        Ok(u) => format!("{}://{}{}/…", u.scheme(), u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default()),
        Err(_) => "…".to_string(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Small helpers shared by the chain tests.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory removed when dropped.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ace-chain-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `content` to `rel` under the directory and returns the full path.
        pub fn write(&self, rel: &str, content: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
