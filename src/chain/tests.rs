//! Table-driven tests of the three chains, from the SDK sources cited in `mod.rs`,
//! plus the process-target test and the no-secret-in-Debug test.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::test_support::TempDir;
use super::*;

/// 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn jwt(exp: i64) -> String {
    let part = |s: &str| URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        part(r#"{"alg":"RS256","kid":"k"}"#),
        part(&format!(r#"{{"sub":"system:serviceaccount:app:app","exp":{exp}}}"#)),
        "U0lHTkFUVVJF"
    )
}

fn expand(s: &str, tmp: &str) -> String {
    s.replace("$TMP", tmp).replace("$FUTURE_JWT", &jwt(NOW + 3600)).replace("$PAST_JWT", &jwt(NOW - 60))
}

type Pairs = &'static [(&'static str, &'static str)];

/// One scenario: `files` are written under a temp dir whose `home/` is the
/// process's home; `$TMP` in values is that dir.
struct Case {
    name: &'static str,
    vars: Pairs,
    props: Pairs,
    files: Pairs,
    imds: Option<bool>,
    active: Provider,
    stopped_at: Option<Provider>,
    shadowed: bool,
    static_token: bool,
    check: fn(&ChainObservation),
}

fn no_check(_: &ChainObservation) {}

const BASE: Case = Case {
    name: "",
    vars: &[],
    props: &[],
    files: &[],
    imds: Some(true),
    active: Provider::InstanceProfile,
    stopped_at: None,
    shadowed: false,
    static_token: false,
    check: no_check,
};

fn state(o: &ChainObservation, p: Provider) -> &ProviderState {
    o.state(p).unwrap_or_else(|| panic!("{} not in chain", p.as_str()))
}

fn partial(o: &ChainObservation, p: Provider) -> String {
    state(o, p).partial.clone().unwrap_or_default()
}

fn env_for(tmp: &TempDir, vars: Pairs, props: Pairs) -> ProcessEnv {
    let t = tmp.path().to_str().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut env = ProcessEnv {
        root: PathBuf::from("/"),
        cwd: Some(tmp.path().to_path_buf()),
        home: Some(home.clone()),
        passwd_home: Some(home),
        ..Default::default()
    };
    for (k, v) in vars {
        env.set_var(k, expand(v, t));
    }
    for (k, v) in props {
        env.set_prop(k, expand(v, t));
    }
    env
}

fn run(sdk: Sdk, cases: &[Case]) {
    assert!(cases.len() >= 12, "at least 12 cases per chain");
    for case in cases {
        let tmp = TempDir::new("case");
        let t = tmp.path().to_str().unwrap().to_string();
        for (rel, content) in case.files {
            tmp.write(rel, &expand(content, &t));
        }
        let env = env_for(&tmp, case.vars, case.props);
        let obs = evaluate(sdk, &env, case.imds, now());
        let ctx = format!("{} [{}]: {obs:#?}", case.name, sdk.as_str());
        assert_eq!(obs.active, case.active, "active: {ctx}");
        assert_eq!(obs.stopped_at, case.stopped_at, "stopped_at: {ctx}");
        assert_eq!(obs.instance_profile_shadowed, case.shadowed, "shadowed: {ctx}");
        assert_eq!(obs.static_session_token, case.static_token, "static_session_token: {ctx}");
        assert_eq!(obs.providers.iter().map(|p| p.provider).collect::<Vec<_>>(), chain(sdk), "{ctx}");
        if obs.active != Provider::None {
            assert!(state(&obs, obs.active).usable, "the active provider is usable: {ctx}");
        }
        (case.check)(&obs);
    }
}

const ENV_KEYS_WITH_TOKEN: Pairs = &[
    ("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE01"),
    ("AWS_SECRET_ACCESS_KEY", "envSecret"),
    ("AWS_SESSION_TOKEN", "envToken"),
    ("AWS_CREDENTIAL_EXPIRATION", "2027-01-15T09:00:00Z"),
];
const ENV_KEYS: Pairs = &[("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE02"), ("AWS_SECRET_ACCESS_KEY", "envSecret")];
const SECURITY_TOKEN_ALIAS: Pairs =
    &[("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE03"), ("AWS_SECRET_ACCESS_KEY", "envSecret"), ("AWS_SECURITY_TOKEN", "legacyToken")];
const JAVA_V1_ALIASES: Pairs = &[("AWS_ACCESS_KEY", "AKIAALIASEXAMPL4"), ("AWS_SECRET_KEY", "aliasSecret")];
const KEY_WITHOUT_SECRET: Pairs = &[("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE05")];
const PROPS_V2: Pairs =
    &[("aws.accessKeyId", "ASIAPROPEXAMPL06"), ("aws.secretAccessKey", "propSecret"), ("aws.sessionToken", "propToken")];
const PROPS_V1: Pairs = &[("aws.accessKeyId", "ASIAPROPEXAMPL07"), ("aws.secretKey", "propSecret"), ("aws.sessionToken", "propToken")];
const CREDS_WITH_TOKEN: Pairs = &[(
    "home/.aws/credentials",
    "[default]\naws_access_key_id = ASIAPROFILEXMP08\naws_secret_access_key = fileSecret\naws_session_token = fileToken\n\
     x_security_token_expires = 2027-01-15T10:00:00Z\n",
)];
const PROCESS_PROFILE: Pairs = &[("home/.aws/config", "[profile dev]\ncredential_process = /usr/local/bin/creds --password hunter2\n")];
const ROLE_PROFILE: Pairs = &[
    ("home/.aws/config", "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/app\nsource_profile = base\n"),
    ("home/.aws/credentials", "[base]\naws_access_key_id = AKIABASEEXAMPL09\naws_secret_access_key = baseSecret\n"),
];
const SSO_PROFILE: Pairs = &[(
    "home/.aws/config",
    "[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = ReadOnly\n\
     [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n",
)];
const WEB_IDENTITY: Pairs = &[("AWS_WEB_IDENTITY_TOKEN_FILE", "$TMP/token"), ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa")];
const FUTURE_TOKEN: Pairs = &[("token", "$FUTURE_JWT")];
const PAST_TOKEN: Pairs = &[("token", "$PAST_JWT")];
const RELATIVE_URI: Pairs = &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task-1")];
const METADATA_DISABLED: Pairs = &[("AWS_EC2_METADATA_DISABLED", "true")];
const IMDS_SOURCED_ROLE: Pairs =
    &[("home/.aws/config", "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\ncredential_source = Ec2InstanceMetadata\n")];

fn env_expiry_and_suffix(o: &ChainObservation) {
    let env = state(o, Provider::Environment);
    assert_eq!(env.expiration, Some(DateTime::from_timestamp(NOW + 3600, 0).unwrap()));
    assert_eq!(env.key_id_suffix.as_deref(), Some("LE01"));
    assert!(env.session_token && env.partial.is_none(), "{env:?}");
}

fn profile_expiry(o: &ChainObservation) {
    assert_eq!(state(o, Provider::Profile).expiration, Some(DateTime::from_timestamp(NOW + 7200, 0).unwrap()));
}

fn jwt_exp(o: &ChainObservation) {
    assert_eq!(state(o, Provider::WebIdentity).expiration, Some(DateTime::from_timestamp(NOW + 3600, 0).unwrap()));
}

fn task_endpoint(o: &ChainObservation) {
    let c = o.container.as_ref().expect("container endpoint");
    assert_eq!(c.uri, "http://169.254.170.2/v2/credentials/task-1");
    assert_eq!(c.source, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
}

#[test]
fn java_v2_chain() {
    run(
        Sdk::JavaV2,
        &[
            Case { name: "nothing configured, IMDS unknown", imds: None, active: Provider::None, ..BASE },
            Case { name: "only the instance profile", ..BASE },
            Case {
                name: "env keys with a session token shadow the instance profile",
                vars: ENV_KEYS_WITH_TOKEN,
                active: Provider::Environment,
                shadowed: true,
                static_token: true,
                check: env_expiry_and_suffix,
                ..BASE
            },
            Case { name: "env keys without token", vars: ENV_KEYS, active: Provider::Environment, shadowed: true, ..BASE },
            Case {
                name: "AWS_SECURITY_TOKEN is not read by v2",
                vars: SECURITY_TOKEN_ALIAS,
                active: Provider::Environment,
                shadowed: true,
                check: |o| {
                    let env = state(o, Provider::Environment);
                    assert!(!env.session_token);
                    assert!(env.partial.as_deref().unwrap_or("").contains("ASIA"), "{env:?}");
                    assert!(env.detail.contains("AWS_SECURITY_TOKEN is not read"), "{env:?}");
                },
                ..BASE
            },
            Case {
                name: "v1 aliases AWS_ACCESS_KEY/AWS_SECRET_KEY are not read by v2",
                vars: JAVA_V1_ALIASES,
                check: |o| assert!(partial(o, Provider::Environment).contains("not read by SDK for Java v2"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "system properties come before the environment",
                vars: ENV_KEYS,
                props: PROPS_V2,
                active: Provider::SystemProperties,
                shadowed: true,
                static_token: true,
                check: |o| assert!(state(o, Provider::Environment).usable, "env would supply credentials too"),
                ..BASE
            },
            Case {
                name: "aws.secretKey is the v1 name",
                props: PROPS_V1,
                check: |o| assert!(partial(o, Provider::SystemProperties).contains("aws.secretKey is the SDK for Java v1 name"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "profile file static keys with session token and a tool's expiry",
                files: CREDS_WITH_TOKEN,
                active: Provider::Profile,
                shadowed: true,
                static_token: true,
                check: profile_expiry,
                ..BASE
            },
            Case {
                name: "credential_process in [profile dev]",
                vars: &[("AWS_PROFILE", "dev")],
                files: PROCESS_PROFILE,
                active: Provider::Profile,
                shadowed: true,
                check: |o| {
                    let d = &state(o, Provider::Profile).detail;
                    assert!(d.contains("credential_process") && !d.contains("hunter2"), "{d}");
                },
                ..BASE
            },
            Case {
                name: "role_arn with source_profile",
                vars: &[("AWS_PROFILE", "app")],
                files: ROLE_PROFILE,
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert!(state(o, Provider::Profile).detail.contains("assume role"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "sso_session profile",
                vars: &[("AWS_PROFILE", "sso")],
                files: SSO_PROFILE,
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert!(state(o, Provider::Profile).detail.contains("SSO"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "container relative URI",
                vars: RELATIVE_URI,
                active: Provider::Container,
                shadowed: true,
                check: task_endpoint,
                ..BASE
            },
            Case {
                name: "web identity with the JWT's exp",
                vars: WEB_IDENTITY,
                files: FUTURE_TOKEN,
                active: Provider::WebIdentity,
                shadowed: true,
                check: jwt_exp,
                ..BASE
            },
            Case {
                name: "an expired web identity token is skipped",
                vars: WEB_IDENTITY,
                files: PAST_TOKEN,
                check: |o| assert!(partial(o, Provider::WebIdentity).contains("expired"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "a key id without secret is skipped",
                vars: KEY_WITHOUT_SECRET,
                check: |o| assert!(partial(o, Provider::Environment).contains("without AWS_SECRET_ACCESS_KEY"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "AWS_EC2_METADATA_DISABLED leaves nothing",
                vars: METADATA_DISABLED,
                active: Provider::None,
                check: |o| assert!(partial(o, Provider::InstanceProfile).contains("AWS_EC2_METADATA_DISABLED"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "an unknown AWS_PROFILE is skipped",
                vars: &[("AWS_PROFILE", "nope")],
                files: CREDS_WITH_TOKEN,
                check: |o| assert!(partial(o, Provider::Profile).contains("\"nope\""), "{o:?}"),
                ..BASE
            },
            Case {
                name: "a token file without role is skipped",
                vars: &[("AWS_WEB_IDENTITY_TOKEN_FILE", "$TMP/token")],
                files: FUTURE_TOKEN,
                check: |o| assert!(partial(o, Provider::WebIdentity).contains("without AWS_ROLE_ARN"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "a token path naming a device is refused, never read",
                vars: &[("AWS_WEB_IDENTITY_TOKEN_FILE", "/dev/zero"), ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa")],
                check: |o| assert!(partial(o, Provider::WebIdentity).contains("not a regular file"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "aws.profile beats AWS_PROFILE",
                vars: &[("AWS_PROFILE", "b")],
                props: &[("aws.profile", "a")],
                files: &[(
                    "home/.aws/credentials",
                    "[a]\naws_access_key_id = AKIAPROFILEA0010\naws_secret_access_key = s\n[b]\nregion = x\n",
                )],
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert_eq!(o.profile, "a"),
                ..BASE
            },
        ],
    );
}

#[test]
fn java_v1_chain() {
    run(
        Sdk::JavaV1,
        &[
            Case { name: "only the instance profile", ..BASE },
            Case {
                name: "env keys with a session token",
                vars: ENV_KEYS_WITH_TOKEN,
                active: Provider::Environment,
                shadowed: true,
                static_token: true,
                ..BASE
            },
            Case {
                name: "AWS_ACCESS_KEY/AWS_SECRET_KEY aliases",
                vars: JAVA_V1_ALIASES,
                active: Provider::Environment,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "AWS_SECURITY_TOKEN is not read",
                vars: SECURITY_TOKEN_ALIAS,
                active: Provider::Environment,
                shadowed: true,
                check: |o| assert!(!state(o, Provider::Environment).session_token),
                ..BASE
            },
            Case { name: "aws.secretKey", props: PROPS_V1, active: Provider::SystemProperties, shadowed: true, static_token: true, ..BASE },
            Case {
                name: "aws.secretAccessKey is the v2 name",
                props: PROPS_V2,
                check: |o| {
                    assert!(partial(o, Provider::SystemProperties).contains("aws.secretAccessKey is the SDK for Java v2 name"), "{o:?}")
                },
                ..BASE
            },
            Case {
                name: "the environment comes before system properties",
                vars: ENV_KEYS,
                props: PROPS_V1,
                active: Provider::Environment,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "profile file static keys with session token",
                files: CREDS_WITH_TOKEN,
                active: Provider::Profile,
                shadowed: true,
                static_token: true,
                check: profile_expiry,
                ..BASE
            },
            Case {
                name: "legacy ~/.aws/config when there is no credentials file",
                files: &[("home/.aws/config", "[default]\naws_access_key_id = AKIALEGACYCONF11\naws_secret_access_key = s\n")],
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "[profile dev] in the config file is not profile dev for v1",
                vars: &[("AWS_PROFILE", "dev")],
                files: &[("home/.aws/config", "[profile dev]\naws_access_key_id = AKIALEGACYCONF12\naws_secret_access_key = s\n")],
                check: |o| assert!(partial(o, Provider::Profile).contains("\"dev\""), "{o:?}"),
                ..BASE
            },
            Case {
                name: "AWS_SHARED_CREDENTIALS_FILE is ignored",
                vars: &[("AWS_SHARED_CREDENTIALS_FILE", "$TMP/creds")],
                files: &[("creds", "[default]\naws_access_key_id = AKIASHAREDFILE13\naws_secret_access_key = s\n")],
                check: |o| assert!(state(o, Provider::Profile).detail.contains("ignored by SDK for Java v1"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "AWS_CREDENTIAL_PROFILES_FILE",
                vars: &[("AWS_CREDENTIAL_PROFILES_FILE", "$TMP/creds")],
                files: &[("creds", "[default]\naws_access_key_id = AKIASHAREDFILE14\naws_secret_access_key = s\n")],
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "role_arn with source_profile",
                files: &[(
                    "home/.aws/credentials",
                    "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\nsource_profile = base\n[base]\naws_access_key_id = AKIABASE00000015\naws_secret_access_key = s\n",
                )],
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "credential_process",
                files: &[("home/.aws/credentials", "[default]\ncredential_process = /bin/creds\n")],
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "SSO profiles are not read by v1",
                files: &[("home/.aws/credentials", "[default]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\n")],
                check: |o| assert!(partial(o, Provider::Profile).contains("SSO"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "the container endpoint replaces IMDS",
                vars: RELATIVE_URI,
                active: Provider::Container,
                shadowed: true,
                check: |o| {
                    task_endpoint(o);
                    assert!(!state(o, Provider::InstanceProfile).present, "{o:?}");
                },
                ..BASE
            },
            Case {
                name: "web identity",
                vars: WEB_IDENTITY,
                files: FUTURE_TOKEN,
                active: Provider::WebIdentity,
                shadowed: true,
                check: jwt_exp,
                ..BASE
            },
            Case {
                name: "a key id without secret is skipped",
                vars: KEY_WITHOUT_SECRET,
                check: |o| assert!(partial(o, Provider::Environment).contains("without AWS_SECRET_KEY"), "{o:?}"),
                ..BASE
            },
            Case { name: "AWS_EC2_METADATA_DISABLED", vars: METADATA_DISABLED, active: Provider::None, ..BASE },
            Case {
                name: "-Dcom.amazonaws.sdk.disableEc2Metadata",
                props: &[("com.amazonaws.sdk.disableEc2Metadata", "TRUE")],
                active: Provider::None,
                ..BASE
            },
        ],
    );
}

#[test]
fn python_chain() {
    run(
        Sdk::Python,
        &[
            Case { name: "only the instance profile", ..BASE },
            Case {
                name: "env keys with a session token shadow the instance profile",
                vars: ENV_KEYS_WITH_TOKEN,
                active: Provider::Environment,
                shadowed: true,
                static_token: true,
                check: env_expiry_and_suffix,
                ..BASE
            },
            Case {
                name: "AWS_SECURITY_TOKEN alias",
                vars: SECURITY_TOKEN_ALIAS,
                active: Provider::Environment,
                shadowed: true,
                static_token: true,
                ..BASE
            },
            Case {
                name: "a key id without secret stops the chain (PartialCredentialsError)",
                vars: KEY_WITHOUT_SECRET,
                active: Provider::None,
                stopped_at: Some(Provider::Environment),
                shadowed: true,
                check: |o| assert!(partial(o, Provider::Environment).contains("PartialCredentialsError"), "{o:?}"),
                ..BASE
            },
            Case { name: "a secret without key id is ignored", vars: &[("AWS_SECRET_ACCESS_KEY", "s")], ..BASE },
            Case { name: "Java aliases are not read", vars: JAVA_V1_ALIASES, ..BASE },
            Case { name: "Java system properties are not read", props: PROPS_V2, ..BASE },
            Case {
                name: "shared credentials file with session token and aws_expiration",
                files: &[(
                    "home/.aws/credentials",
                    "[default]\naws_access_key_id = ASIAPROFILEXMP16\naws_secret_access_key = s\naws_session_token = t\naws_expiration = 2027-01-15T10:00:00Z\n",
                )],
                active: Provider::Profile,
                shadowed: true,
                static_token: true,
                check: profile_expiry,
                ..BASE
            },
            Case {
                name: "credential_process",
                vars: &[("AWS_PROFILE", "dev")],
                files: PROCESS_PROFILE,
                active: Provider::Process,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "assume-role comes before web identity",
                vars: &[
                    ("AWS_PROFILE", "app"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "$TMP/token"),
                    ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"),
                ],
                files: &[
                    ("token", "$FUTURE_JWT"),
                    ("home/.aws/config", "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/app\nsource_profile = base\n"),
                    ("home/.aws/credentials", "[base]\naws_access_key_id = AKIABASEEXAMPL17\naws_secret_access_key = s\n"),
                ],
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert!(state(o, Provider::WebIdentity).usable),
                ..BASE
            },
            Case {
                name: "role_arn without source stops the chain",
                files: &[("home/.aws/config", "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\n")],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "sso_session",
                vars: &[("AWS_PROFILE", "sso")],
                files: SSO_PROFILE,
                active: Provider::Sso,
                shadowed: true,
                ..BASE
            },
            Case {
                name: "EKS Pod Identity full URI with a token file",
                vars: &[
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "$TMP/eks-token"),
                ],
                files: &[("eks-token", "podIdentityToken")],
                active: Provider::Container,
                shadowed: true,
                check: |o| {
                    let c = o.container.as_ref().unwrap();
                    assert_eq!(c.uri, "http://169.254.170.23/v1/credentials");
                    assert_eq!(c.authorization.as_ref().map(Secret::expose), Some("podIdentityToken"));
                },
                ..BASE
            },
            Case {
                name: "a line break in the container token stops botocore",
                vars: &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x"), ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "$TMP/eks-token")],
                files: &[("eks-token", "token\n")],
                active: Provider::None,
                stopped_at: Some(Provider::Container),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "web identity",
                vars: WEB_IDENTITY,
                files: FUTURE_TOKEN,
                active: Provider::WebIdentity,
                shadowed: true,
                check: jwt_exp,
                ..BASE
            },
            Case {
                name: "an expired web identity token is still selected, then fails",
                vars: WEB_IDENTITY,
                files: PAST_TOKEN,
                active: Provider::WebIdentity,
                shadowed: true,
                check: |o| assert!(partial(o, Provider::WebIdentity).contains("fails at the first request"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "web identity comes before the shared credentials file",
                vars: WEB_IDENTITY,
                files: &[
                    ("token", "$FUTURE_JWT"),
                    ("home/.aws/credentials", "[default]\naws_access_key_id = AKIASHADOWED0018\naws_secret_access_key = s\n"),
                ],
                active: Provider::WebIdentity,
                shadowed: true,
                check: |o| assert!(state(o, Provider::Profile).usable),
                ..BASE
            },
            Case {
                name: "an unknown AWS_PROFILE fails before any provider (ProfileNotFound)",
                vars: &[("AWS_PROFILE", "nope"), ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE19"), ("AWS_SECRET_ACCESS_KEY", "s")],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                check: |o| assert!(partial(o, Provider::Profile).contains("ProfileNotFound"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "AWS_DEFAULT_PROFILE wins over AWS_PROFILE",
                vars: &[("AWS_DEFAULT_PROFILE", "a"), ("AWS_PROFILE", "b")],
                files: &[(
                    "home/.aws/credentials",
                    "[a]\naws_access_key_id = AKIAPROFILEA0020\naws_secret_access_key = s\n[b]\nregion = x\n",
                )],
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert_eq!(o.profile, "a"),
                ..BASE
            },
            Case { name: "AWS_EC2_METADATA_DISABLED", vars: METADATA_DISABLED, active: Provider::None, ..BASE },
            Case {
                name: "static keys in the config file (config-file)",
                files: &[("home/.aws/config", "[default]\naws_access_key_id = AKIACONFIGFILE21\naws_secret_access_key = s\n")],
                active: Provider::Profile,
                shadowed: true,
                check: |o| assert!(state(o, Provider::Profile).detail.contains(".aws/config"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "a web identity token file without role stops the chain",
                vars: &[("AWS_WEB_IDENTITY_TOKEN_FILE", "$TMP/token")],
                files: FUTURE_TOKEN,
                active: Provider::None,
                stopped_at: Some(Provider::WebIdentity),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "a full container URI naming another host stops the chain",
                vars: &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.0.0.1/creds")],
                active: Provider::None,
                stopped_at: Some(Provider::Container),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "a credentials file key id without secret stops the chain",
                files: &[("home/.aws/credentials", "[default]\naws_access_key_id = AKIAPARTIALFIL22\n")],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "a duplicate section makes botocore refuse the file",
                files: &[("home/.aws/credentials", "[default]\nregion = a\n[default]\nregion = b\n")],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "credential_source=Ec2InstanceMetadata assumes the role",
                files: IMDS_SOURCED_ROLE,
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
            // Regression (tests/botocore_parity.rs): the exporter reported `profile`
            // where botocore raises CredentialRetrievalError.
            Case {
                name: "credential_source=Ec2InstanceMetadata with IMDS disabled stops the chain",
                vars: METADATA_DISABLED,
                files: IMDS_SOURCED_ROLE,
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                check: |o| assert!(partial(o, Provider::Profile).contains("CredentialRetrievalError"), "{o:?}"),
                ..BASE
            },
            Case {
                name: "credential_source=Ec2InstanceMetadata without an instance profile stops the chain",
                files: IMDS_SOURCED_ROLE,
                imds: Some(false),
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                ..BASE
            },
            Case {
                name: "credential_source=Ec2InstanceMetadata, IMDS unknown: assumed to work",
                files: IMDS_SOURCED_ROLE,
                imds: None,
                active: Provider::Profile,
                ..BASE
            },
            Case {
                name: "credential_source=Environment without keys stops the chain",
                files: &[(
                    "home/.aws/config",
                    "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\ncredential_source = Environment\n",
                )],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "credential_source=EcsContainer needs a container URI",
                files: &[(
                    "home/.aws/config",
                    "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\ncredential_source = EcsContainer\n",
                )],
                active: Provider::None,
                stopped_at: Some(Provider::Profile),
                shadowed: true,
                ..BASE
            },
            Case {
                name: "credential_source=EcsContainer with a relative URI assumes the role",
                vars: RELATIVE_URI,
                files: &[(
                    "home/.aws/config",
                    "[default]\nrole_arn = arn:aws:iam::123456789012:role/app\ncredential_source = EcsContainer\n",
                )],
                active: Provider::Profile,
                shadowed: true,
                ..BASE
            },
        ],
    );
}

#[test]
fn chains_list_each_step_provider_once_in_order() {
    for sdk in Sdk::ALL {
        let mut seen = Vec::new();
        for s in steps(sdk) {
            if !seen.contains(&s.provider) {
                seen.push(s.provider);
            }
        }
        assert_eq!(seen, chain(sdk), "{}", sdk.as_str());
        assert_eq!(Sdk::from_name(sdk.as_str()), Some(sdk));
    }
    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        names,
        ["system_properties", "environment", "web_identity", "profile", "process", "sso", "container", "instance_profile", "none"]
    );
}

#[test]
fn jwt_exp_is_decoded_without_the_signature() {
    assert_eq!(jwt_expiry(&jwt(NOW)).unwrap().timestamp(), NOW);
    let padded = format!("x.{}.y", base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":1800000000.5}"#));
    assert_eq!(jwt_expiry(&padded).unwrap().timestamp(), NOW, "padding and fractional exp accepted");
    for bad in [
        "",
        "abc",
        "a.!!!.c",
        &format!("a.{}.c", URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)),
        &format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]")),
    ] {
        let err = jwt_expiry(bad).unwrap_err();
        assert!(bad.is_empty() || !err.contains(bad), "{err}");
    }
}

#[test]
fn full_container_uris_are_checked_like_botocore() {
    for ok in [
        "http://127.0.0.1:8080/c",
        "http://localhost/c",
        "http://[::1]/c",
        "http://169.254.170.2/c",
        "http://169.254.170.23/v1",
        "http://[fd00:ec2::23]/v1",
        "https://creds.example.com/c",
    ] {
        assert!(check_full_uri(ok).is_ok(), "{ok}");
    }
    for bad in ["http://10.0.0.1/c", "http://example.com/c", "not a url"] {
        assert!(check_full_uri(bad).is_err(), "{bad}");
    }
}

#[test]
fn no_debug_output_holds_a_secret() {
    const SECRETS: [&str; 9] = [
        "ENVSECRETx1",
        "ENVTOKENx2",
        "PROPSECRETx3",
        "PROPTOKENx4",
        "FILESECRETx5",
        "FILETOKENx6",
        "CONTAINERTOKENx7",
        "PROXYPASSx8",
        "PROCSECRETx9",
    ];
    let tmp = TempDir::new("debug");
    let token = jwt(NOW + 3600);
    tmp.write("token", &token);
    tmp.write("ctoken", "CONTAINERTOKENx7");
    tmp.write(
        "home/.aws/credentials",
        "[default]\naws_access_key_id = ASIAFILE00000001\naws_secret_access_key = FILESECRETx5\naws_session_token = FILETOKENx6\n",
    );
    tmp.write("home/.aws/config", "[profile p]\ncredential_process = /bin/creds --secret PROCSECRETx9\n");
    let vars: Pairs = &[
        ("AWS_ACCESS_KEY_ID", "ASIAENV000000001"),
        ("AWS_SECRET_ACCESS_KEY", "ENVSECRETx1"),
        ("AWS_SESSION_TOKEN", "ENVTOKENx2"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "$TMP/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c"),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "$TMP/ctoken"),
        ("http_proxy", "http://user:PROXYPASSx8@proxy:3128"),
    ];
    let props: Pairs = &[
        ("aws.accessKeyId", "ASIAPROP00000001"),
        ("aws.secretAccessKey", "PROPSECRETx3"),
        ("aws.secretKey", "PROPSECRETx3"),
        ("aws.sessionToken", "PROPTOKENx4"),
    ];
    let mut env = env_for(&tmp, vars, props);
    let mut dumps = vec![format!("{env:?}")];
    for profile in ["default", "p"] {
        env.set_var("AWS_PROFILE", profile);
        for sdk in Sdk::ALL {
            let obs = evaluate(sdk, &env, Some(true), now());
            assert!(obs.container.as_ref().is_some_and(|c| c.authorization.is_some()));
            dumps.push(format!("{obs:?} {obs:#?}"));
            dumps.extend(obs.errors.iter().map(|e| e.to_string()));
        }
    }
    let files = IniFile::load(&tmp.path().join("home/.aws/credentials"), Path::new("c")).unwrap();
    dumps.push(format!("{files:?}"));
    for dump in &dumps {
        for secret in SECRETS.iter().copied().chain([token.as_str(), "U0lHTkFUVVJF"]) {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
    }
}

/// Regression for the process target: a child with its own environment and
/// `-Daws.*` on its command line is found by name and reported correctly.
#[test]
fn process_target_is_read_from_proc() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let tmp = TempDir::new("proc-target");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let marker = format!("app-{}-{}.jar", std::process::id(), NOW);
    // `sh -s` reads its script from stdin (kept open, so it waits) and takes the
    // rest as positional parameters; argv[0] "java" makes the command line look
    // like a JVM's: `java -s -- -Daws.accessKeyId=... -jar app.jar -Daws...`.
    let mut child = Command::new("/bin/sh")
        .arg0("java")
        .args([
            "-s",
            "--",
            "-Daws.accessKeyId=AKIAPROCTEST1234",
            "-Daws.secretAccessKey=PROCSECRET",
            "-jar",
            &marker,
            "-Daws.accessKeyId=PROGRAMARG",
        ])
        .env_clear()
        .env("HOME", &home)
        .env("AWS_SESSION_TOKEN", "PROCTOKEN")
        .env("JAVA_TOOL_OPTIONS", "-Daws.sessionToken=TOOLTOKEN -Xmx64m")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("NO_PROXY", "169.254.0.0/16")
        .env("UNRELATED_SECRET", "dropme")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn /bin/sh");
    let pid = child.id();
    // `spawn` can return before the child has exec'd; once the shell answers, its
    // command line and environment are the ones under test.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo ready\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let result = std::panic::catch_unwind(|| {
        let found = find_processes(Path::new("/proc"), &regex::Regex::new(&regex::escape(&marker)).unwrap()).unwrap();
        assert_eq!(found.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![pid], "{found:?}");

        let env = ProcessEnv::from_proc(Path::new("/proc"), pid).expect("read own child");
        assert_eq!(env.prop("aws.accessKeyId"), Some("AKIAPROCTEST1234"), "program arguments after -jar are not properties");
        assert_eq!(env.prop("aws.sessionToken"), Some("TOOLTOKEN"));
        assert_eq!(env.home.as_deref(), Some(home.as_path()));
        assert_eq!(env.var("UNRELATED_SECRET"), None);
        assert!(env.root.ends_with(format!("{pid}/root")));

        let obs = evaluate(Sdk::JavaV2, &env, Some(true), now());
        assert_eq!(obs.active, Provider::SystemProperties, "{obs:#?}");
        assert!(obs.instance_profile_shadowed && obs.static_session_token, "{obs:#?}");
        assert_eq!(state(&obs, Provider::SystemProperties).key_id_suffix.as_deref(), Some("1234"));
        assert!(obs.proxy_bypass_missing, "botocore ignores CIDR entries in NO_PROXY");
        let dump = format!("{env:?}{obs:?}");
        assert!(!dump.contains("PROCSECRET") && !dump.contains("TOOLTOKEN") && !dump.contains("PROCTOKEN"), "{dump}");

        let py = evaluate(Sdk::Python, &env, Some(true), now());
        assert_eq!(py.active, Provider::InstanceProfile, "botocore reads no system properties: {py:#?}");
    });
    let _ = stdin.write_all(b"exit 0\n");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
