//! Whose chain: the environment, Java system properties and home directory of
//! the exporter itself or of another process, read from `/proc`.
//!
//! Only what a credential chain looks at is kept (`AWS_*`, proxies, `HOME`,
//! `aws.*` system properties); everything else is dropped while reading, and
//! values that are or may hold secrets are held as [`Secret`] from the start.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use regex::Regex;
use zeroize::Zeroizing;

use super::{ChainError, ErrorReason};
use crate::fsread::{self, MAX_CONFIG_FILE, MAX_PROC_FILE};
use crate::secret::Secret;

/// A value read from an environment, a command line or a profile file; secrets print as `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Not secret: a path, an ARN, a profile name, an access key id.
    Plain(String),
    /// A secret access key, a session token, a proxy URL that may carry a password, ...
    Secret(Secret),
}

impl Value {
    /// Wraps `value`, as a [`Secret`] when `secret` is true.
    pub fn new(value: String, secret: bool) -> Self {
        if secret { Value::Secret(Secret::new(value)) } else { Value::Plain(value) }
    }

    /// The value, for presence checks and, for plain values, use; never log a secret one.
    pub fn expose(&self) -> &str {
        match self {
            Value::Plain(v) => v,
            Value::Secret(s) => s.expose(),
        }
    }

    /// The value when it is not secret.
    pub fn as_plain(&self) -> Option<&str> {
        match self {
            Value::Plain(v) => Some(v),
            Value::Secret(_) => None,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Plain(v) => fmt::Debug::fmt(v, f),
            Value::Secret(_) => f.write_str("***"),
        }
    }
}

/// Environment variables the chain never needs to keep even though they are read.
const JAVA_OPTION_VARS: [&str; 3] = ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"];

/// Whether an environment variable matters to a credential chain or the IMDS proxy check.
fn keep_var(name: &str) -> bool {
    name.starts_with("AWS_")
        || matches!(name, "HOME" | "USER" | "LOGNAME" | "BOTO_CONFIG" | "REQUEST_METHOD")
        || matches!(name.to_ascii_uppercase().as_str(), "HTTP_PROXY" | "HTTPS_PROXY" | "ALL_PROXY" | "NO_PROXY")
}

/// Whether an environment variable holds (or may embed) a secret. Paths to
/// token files are not secret; proxy URLs may carry `user:password@`. Access
/// key ids are not secret to AWS, but only their last four characters are ever shown.
pub fn is_secret_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("_FILE") || upper.ends_with("_PATH") || upper == "NO_PROXY" {
        return false;
    }
    ["SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY"].iter().any(|w| upper.contains(w)) || upper.ends_with("_PROXY")
}

/// Java system properties the SDKs read (`aws.*`, `com.amazonaws.*`) and `user.home` (SDK v1's home).
fn keep_prop(name: &str) -> bool {
    name.starts_with("aws.") || name.starts_with("com.amazonaws.") || name == "user.home"
}

/// Whether a Java system property holds a secret: `aws.secretAccessKey` (v2),
/// `aws.secretKey` (v1), `aws.sessionToken`, `aws.containerAuthorizationToken`;
/// `aws.accessKeyId` is hidden too (only its last four characters are shown).
pub fn is_secret_prop(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with("file") || lower.ends_with("path") {
        return false;
    }
    ["secret", "token", "password", "accesskey"].iter().any(|w| lower.contains(w))
}

/// What a credential chain sees of one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessEnv {
    /// Environment variables that matter to the chain, secrets as [`Value::Secret`].
    pub vars: BTreeMap<String, Value>,
    /// Java system properties (`-Dname=value`) from the command line and the
    /// `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`, `_JAVA_OPTIONS` variables, later ones winning.
    pub java_props: BTreeMap<String, Value>,
    /// `HOME`, else the home directory of the process's user: what botocore
    /// (`os.path.expanduser`) and SDK for Java v2 (`ProfileFileLocation.userHomeDirectory`) use.
    pub home: Option<PathBuf>,
    /// Name of the process's (real) user, from `/etc/passwd`.
    pub user: Option<String>,
    /// Home directory of the process's user in `/etc/passwd`: what the JVM puts
    /// in `user.home`, which SDK for Java v1 uses instead of `HOME`.
    pub passwd_home: Option<PathBuf>,
    /// Working directory of the process; relative paths in the environment resolve against it.
    pub cwd: Option<PathBuf>,
    /// Where the process's `/` is for the exporter: `/` for itself, `/proc/PID/root`
    /// for another process (which may live in another mount namespace, e.g. a container).
    pub root: PathBuf,
}

impl ProcessEnv {
    /// The exporter's own environment and home: right when it runs as a sidecar
    /// sharing the application's environment.
    pub fn current() -> Self {
        let mut env = ProcessEnv { root: PathBuf::from("/"), cwd: std::env::current_dir().ok(), ..Default::default() };
        let mut java_options: Vec<(String, Zeroizing<String>)> = Vec::new();
        for (name, value) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if JAVA_OPTION_VARS.contains(&name.as_str()) {
                java_options.push((name, Zeroizing::new(value.to_string_lossy().into_owned())));
            } else if keep_var(&name) {
                env.set_var(&name, value.to_string_lossy().into_owned());
            }
        }
        env.apply_java_options(&java_options, &[]);
        let uid = fsread::read_to_string(Path::new("/proc/self/status"), MAX_CONFIG_FILE).ok().as_deref().and_then(|s| parse_uid(s));
        env.resolve_user(uid);
        env
    }

    /// Reads process `pid` from a `/proc`-like tree at `proc_root` (tests use a fake one).
    pub fn from_proc(proc_root: &Path, pid: u32) -> Result<Self, ChainError> {
        let dir = proc_root.join(pid.to_string());
        let environ = read_proc_file(&dir.join("environ"), pid)?;
        let cmdline = read_proc_file(&dir.join("cmdline"), pid)?;
        let status = read_proc_file(&dir.join("status"), pid)?;

        let mut env = ProcessEnv { root: dir.join("root"), cwd: fs::read_link(dir.join("cwd")).ok(), ..Default::default() };
        let mut java_options: Vec<(String, Zeroizing<String>)> = Vec::new();
        for entry in environ.split(|b| *b == 0) {
            let Some(eq) = entry.iter().position(|b| *b == b'=') else { continue };
            let name = String::from_utf8_lossy(&entry[..eq]).into_owned();
            let value = &entry[eq + 1..];
            if JAVA_OPTION_VARS.contains(&name.as_str()) {
                java_options.push((name, Zeroizing::new(utf8(value))));
            } else if keep_var(&name) {
                env.set_var(&name, utf8(value));
            }
        }
        let args: Vec<Zeroizing<String>> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| Zeroizing::new(utf8(a))).collect();
        env.apply_java_options(&java_options, args.get(1..).unwrap_or_default());
        let uid = std::str::from_utf8(&status).ok().and_then(parse_uid);
        env.resolve_user(uid);
        Ok(env)
    }

    /// Sets an environment variable, as a secret when [`is_secret_var`] says so.
    pub fn set_var(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_string(), Value::new(value.into(), is_secret_var(name)));
    }

    /// Sets a Java system property, as a secret when [`is_secret_prop`] says so.
    pub fn set_prop(&mut self, name: &str, value: impl Into<String>) {
        self.java_props.insert(name.to_string(), Value::new(value.into(), is_secret_prop(name)));
    }

    /// An environment variable, set (possibly empty) or not.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(Value::expose)
    }

    /// A Java system property, set (possibly empty) or not.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.java_props.get(name).map(Value::expose)
    }

    /// Where the exporter finds `path` as the process sees it: relative paths
    /// resolve against the process's working directory, everything under its
    /// root, and nothing outside it: `..` stops at the root and symlinks are
    /// followed inside it (see [`resolve_in_root`]), so `HOME=/../x` in a
    /// chrooted process cannot make the exporter read `/proc/PID/root/../x`.
    /// Fails as the process itself would on a symlink loop (`ELOOP`) or a link it cannot read.
    pub fn host_path(&self, path: &Path) -> io::Result<PathBuf> {
        let absolute = match (&self.cwd, path.is_relative()) {
            (Some(cwd), true) => cwd.join(path),
            _ => path.to_path_buf(),
        };
        if self.root.as_os_str().is_empty() || self.root == Path::new("/") {
            return Ok(absolute);
        }
        resolve_in_root(&self.root, &absolute)
    }

    /// Applies, in the JVM's order of precedence (later wins): `JAVA_TOOL_OPTIONS`,
    /// `JDK_JAVA_OPTIONS`, the command line, `_JAVA_OPTIONS`.
    fn apply_java_options(&mut self, option_vars: &[(String, Zeroizing<String>)], args: &[Zeroizing<String>]) {
        let from_var = |name: &str| option_vars.iter().find(|(n, _)| n == name).map(|(_, v)| split_java_options(v));
        for name in ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"] {
            for arg in from_var(name).unwrap_or_default() {
                self.apply_java_arg(&arg);
            }
        }
        for arg in jvm_options(args) {
            self.apply_java_arg(arg);
        }
        for arg in from_var("_JAVA_OPTIONS").unwrap_or_default() {
            self.apply_java_arg(&arg);
        }
    }

    fn apply_java_arg(&mut self, arg: &str) {
        let Some(definition) = arg.strip_prefix("-D") else { return };
        // `-Dname` without a value sets the property to the empty string.
        let (name, value) = definition.split_once('=').unwrap_or((definition, ""));
        if keep_prop(name) {
            self.set_prop(name, value);
        }
    }

    /// Fills `user`, `passwd_home` and `home` from the uid and the process's `/etc/passwd`.
    fn resolve_user(&mut self, uid: Option<u32>) {
        if let Some(uid) = uid {
            // Capped, regular files only: a target's /etc/passwd may be a FIFO or a link to /dev/zero.
            let passwd = self
                .host_path(Path::new("/etc/passwd"))
                .and_then(|p| fsread::read(&p, MAX_CONFIG_FILE))
                .map(|b| utf8(&b))
                .unwrap_or_default();
            if let Some((name, home)) = passwd_entry(&passwd, uid) {
                self.user = Some(name);
                self.passwd_home = Some(home);
            }
        }
        self.home = self.var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).or_else(|| self.passwd_home.clone());
    }
}

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// `path` as a process whose root directory is `root` sees it, as a path the
/// exporter can open: resolved component by component as the kernel does for
/// a chrooted process (`openat2` with `RESOLVE_IN_ROOT`): `..` at the root stays
/// at the root, and a symlink's target, absolute or relative, is resolved
/// inside `root` too. A component that does not exist ends the walk (the
/// rest is appended lexically, still inside `root`); more than
/// [`MAX_SYMLINKS`] links, or one that cannot be read, is an error. A target that swaps a directory for a symlink between this walk
/// and the open could still redirect it once; the reader then refuses
/// anything but a regular file of at most its cap.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: std::collections::VecDeque<Component<'_>> = path.components().collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    // Link targets are owned; their components join the queue as owned strings.
    let mut owned: std::collections::VecDeque<std::ffi::OsString> = std::collections::VecDeque::new();
    loop {
        let next = match owned.pop_front() {
            Some(c) => c,
            None => match pending.pop_front() {
                Some(Component::Normal(c)) => c.to_os_string(),
                Some(Component::ParentDir) => "..".into(),
                Some(_) => continue,
                None => break,
            },
        };
        if next == ".." {
            resolved.pop();
            continue;
        }
        if next == "." || next.is_empty() {
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&next);
        // Every component is examined, an absent one's successors too: after
        // `absent/..` the walk is back in a directory where links exist.
        let meta = fs::symlink_metadata(&candidate).ok();
        let link = match meta {
            Some(m) if m.file_type().is_symlink() => Some(fs::read_link(&candidate)?),
            _ => None,
        };
        match link {
            Some(_) if links == MAX_SYMLINKS => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("more than {MAX_SYMLINKS} symbolic links")));
            }
            Some(target) => {
                links += 1;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut parts: std::collections::VecDeque<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(c) => Some(c.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                parts.extend(owned.drain(..));
                owned = parts;
            }
            None => resolved.push(next),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// Bytes to a string; secrets are valid UTF-8 in practice, anything else is replaced.
fn utf8(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Reads a `/proc` file whole, into memory that is zeroed when dropped (`environ` holds secrets).
fn read_proc_file(path: &Path, pid: u32) -> Result<Zeroizing<Vec<u8>>, ChainError> {
    fsread::read(path, MAX_PROC_FILE).map_err(|e| proc_error(path, pid, &e))
}

/// Maps a `/proc` read failure to a [`ChainError`] that says what to do.
pub(crate) fn proc_error(path: &Path, pid: u32, e: &io::Error) -> ChainError {
    // ESRCH: the process exited between listing and reading.
    if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) {
        return ChainError::new(ErrorReason::NotFound, format!("process {pid} is gone: cannot read {}", path.display()));
    }
    if e.kind() == io::ErrorKind::PermissionDenied {
        return ChainError::new(
            ErrorReason::PermissionDenied,
            format!(
                "cannot read {}: permission denied; the exporter must run as the same user as process {pid} or have CAP_SYS_PTRACE",
                path.display()
            ),
        );
    }
    ChainError::new(ErrorReason::Io, format!("cannot read {}: {e}", path.display()))
}

/// The real uid from `/proc/PID/status` (`Uid:\treal\teffective\tsaved\tfs`): what
/// `getuid()`, and so Python's `pwd` fallback and the JVM's `user.home`, use.
fn parse_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|rest| rest.split_whitespace().next()).and_then(|u| u.parse().ok())
}

/// Name and home directory of `uid` in an `/etc/passwd` text.
fn passwd_entry(passwd: &str, uid: u32) -> Option<(String, PathBuf)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[2].parse() == Ok(uid)).then(|| (fields[0].to_string(), PathBuf::from(fields[5])))
    })
}

/// Splits a `JAVA_TOOL_OPTIONS`-style value at whitespace, honouring single and
/// double quotes as the JDK launcher does (`JDK_JAVA_OPTIONS`, JDK 9+).
fn split_java_options(value: &str) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    let mut current = Zeroizing::new(String::new());
    let mut quote: Option<char> = None;
    let mut in_token = false;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_token = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_token {
                    out.push(std::mem::replace(&mut current, Zeroizing::new(String::new())));
                    in_token = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        out.push(current);
    }
    out
}

/// JVM options that take the next argument as their value.
const JVM_OPTIONS_WITH_VALUE: [&str; 13] = [
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--limit-modules",
    "--add-reads",
    "--add-exports",
    "--add-opens",
    "--patch-module",
    "--enable-native-access",
];

/// The launcher options of a `java` command line (argv without argv\[0\]): they
/// end at the main class, or after `-jar FILE` / `-m MODULE`; a `-D` after
/// that is an argument of the program, not a system property.
fn jvm_options(args: &[Zeroizing<String>]) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if matches!(arg, "-jar" | "-m" | "--module") || !arg.starts_with('-') {
            break;
        }
        if JVM_OPTIONS_WITH_VALUE.contains(&arg) {
            i += 2;
            continue;
        }
        out.push(arg);
        i += 1;
    }
    out.into_iter()
}

/// Processes in the proc file system at `proc_root` (`/proc`, or the host's
/// under `--path.rootfs`) whose name (`comm`) or full command line matches
/// `pattern`, as `(pid, comm)` sorted by pid. The exporter itself is never
/// listed: its PID there is what `proc_root/self` names, which is not
/// [`std::process::id`] when `proc_root` belongs to another PID namespace
/// (the host's `/proc` seen from a container).
pub fn find_processes(proc_root: &Path, pattern: &Regex) -> Result<Vec<(u32, String)>, ChainError> {
    let me = fs::read_link(proc_root.join("self")).ok().and_then(|p| p.to_str()?.parse::<u32>().ok()).ok_or_else(|| {
        ChainError::new(
            ErrorReason::Io,
            format!(
                "{} is not a proc file system (it has no self link): mount the host's /proc there, or the host's root with its submounts (--path.rootfs)",
                proc_root.display()
            ),
        )
    })?;
    Ok(find_processes_in(proc_root, pattern, me))
}

/// [`find_processes`] over a `/proc`-like tree, skipping `skip_pid`.
pub fn find_processes_in(proc_root: &Path, pattern: &Regex, skip_pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir(proc_root) else { return Vec::new() };
    let mut found: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != skip_pid)
        .filter_map(|pid| {
            let dir = proc_root.join(pid.to_string());
            // Processes come and go while we look: unreadable ones are skipped.
            let comm = fsread::read_to_string(&dir.join("comm"), MAX_CONFIG_FILE).ok()?.trim_end_matches('\n').to_string();
            // The command line can hold `-Daws.secretKey=...`: keep it in zeroed memory, never return it.
            let raw = fsread::read(&dir.join("cmdline"), MAX_PROC_FILE).unwrap_or_default();
            let cmdline =
                Zeroizing::new(raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(String::from_utf8_lossy).collect::<Vec<_>>().join(" "));
            (pattern.is_match(&comm) || pattern.is_match(&cmdline)).then_some((pid, comm))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::test_support::TempDir;

    fn z(args: &[&str]) -> Vec<Zeroizing<String>> {
        args.iter().map(|a| Zeroizing::new(a.to_string())).collect()
    }

    #[test]
    fn secret_variables_are_recognised() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SECRET_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "HTTP_PROXY",
            "https_proxy",
        ] {
            assert!(is_secret_var(name), "{name}");
        }
        for name in
            ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "NO_PROXY", "no_proxy", "AWS_PROFILE"]
        {
            assert!(!is_secret_var(name), "{name}");
        }
        for name in ["aws.secretAccessKey", "aws.secretKey", "aws.sessionToken", "aws.containerAuthorizationToken"] {
            assert!(is_secret_prop(name), "{name}");
        }
        assert!(!is_secret_prop("aws.webIdentityTokenFile"));
        assert!(!is_secret_prop("aws.profile"));
        assert!(is_secret_var("AWS_ACCESS_KEY_ID") && is_secret_prop("aws.accessKeyId"), "only key id suffixes are shown");
    }

    #[test]
    fn java_options_split_like_the_launcher() {
        let parts = split_java_options(r#"-Xmx1g  -Daws.region=eu-west-1 "-Dapp.name=my app" -Dx='a b'"#);
        let parts: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        assert_eq!(parts, ["-Xmx1g", "-Daws.region=eu-west-1", "-Dapp.name=my app", "-Dx=a b"]);
    }

    #[test]
    fn system_properties_stop_at_the_main_class() {
        let args = z(&["-cp", "-Dnot.a.prop", "-Daws.accessKeyId=AKIA1", "-Xmx1g", "-jar", "app.jar", "-Daws.secretKey=program-arg"]);
        let options: Vec<&str> = jvm_options(&args).collect();
        assert_eq!(options, ["-Daws.accessKeyId=AKIA1", "-Xmx1g"]);
        let args = z(&["-Daws.profile=dev", "com.example.Main", "-Daws.profile=ignored"]);
        assert_eq!(jvm_options(&args).collect::<Vec<_>>(), ["-Daws.profile=dev"]);
    }

    #[test]
    fn later_option_sources_win_as_in_the_jvm() {
        let mut env = ProcessEnv::default();
        let vars = vec![
            ("JAVA_TOOL_OPTIONS".to_string(), Zeroizing::new("-Daws.profile=tool -Daws.region=a".to_string())),
            ("_JAVA_OPTIONS".to_string(), Zeroizing::new("-Daws.region=c -Dunrelated=1".to_string())),
        ];
        env.apply_java_options(&vars, &z(&["-Daws.profile=cmdline", "-Daws.region=b", "-Daws.sessionToken", "Main"]));
        assert_eq!(env.prop("aws.profile"), Some("cmdline"));
        assert_eq!(env.prop("aws.region"), Some("c"));
        assert_eq!(env.prop("aws.sessionToken"), Some(""), "-Dname without value is the empty string");
        assert_eq!(env.prop("unrelated"), None, "only properties the SDKs read are kept");
    }

    #[test]
    fn uid_and_passwd_entries_parse() {
        let status = "Name:\tjava\nUmask:\t0022\nUid:\t1001\t1001\t1001\t1001\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_uid(status), Some(1001));
        let passwd = "root:x:0:0:root:/root:/bin/bash\napp:x:1001:100:App,,,:/srv/app:/usr/sbin/nologin\n";
        assert_eq!(passwd_entry(passwd, 1001), Some(("app".to_string(), PathBuf::from("/srv/app"))));
        assert_eq!(passwd_entry(passwd, 7), None);
    }

    #[test]
    fn host_paths_go_through_the_process_root_and_cwd() {
        let env = ProcessEnv { root: PathBuf::from("/proc/42/root"), cwd: Some(PathBuf::from("/srv/app")), ..Default::default() };
        assert_eq!(env.host_path(Path::new("/home/a/.aws/config")).unwrap(), PathBuf::from("/proc/42/root/home/a/.aws/config"));
        assert_eq!(env.host_path(Path::new("creds")).unwrap(), PathBuf::from("/proc/42/root/srv/app/creds"));
        let me = ProcessEnv { root: PathBuf::from("/"), ..Default::default() };
        assert_eq!(me.host_path(Path::new("/etc/passwd")).unwrap(), PathBuf::from("/etc/passwd"));
    }

    /// Issue 12: `HOME=/../x` in a chrooted process read a file outside its
    /// jail through `/proc/PID/root/..`; neither `..` nor a symlink leaves the root now.
    #[test]
    fn paths_in_a_target_never_leave_its_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("jail");
        std::fs::create_dir_all(root.join("home/app")).unwrap();
        std::fs::create_dir_all(root.join("srv/real")).unwrap();
        let link = |name: &str, to: &str| std::os::unix::fs::symlink(to, root.join(name)).unwrap();
        link("home/app/abs", "/../../outside");
        link("home/app/rel", "../../../../../outside");
        link("home/app/inside", "/srv/real");
        link("home/app/hop", "rel");
        link("loop", "loop");
        let cases = [
            ("/../outside/x", "outside/x"),
            ("/home/../../../outside", "outside"),
            ("/home/app/abs/x", "outside/x"),
            ("/home/app/rel/x", "outside/x"),
            ("/home/app/hop/x", "outside/x"),
            ("/home/app/inside/x", "srv/real/x"),
            ("/home/app/inside/../x", "srv/x"),
            ("/missing/../../x", "x"),
            // Regression: an absent component once stopped link checks for the rest of the path.
            ("/nope/../home/app/abs/x", "outside/x"),
            ("/nope/../home/app/inside/x", "srv/real/x"),
        ];
        for (path, want) in cases {
            assert_eq!(resolve_in_root(&root, Path::new(path)).unwrap(), root.join(want), "{path}");
        }
        let err = resolve_in_root(&root, Path::new("/loop/x")).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        let env = ProcessEnv { root: root.clone(), cwd: Some(PathBuf::from("/home/app")), ..Default::default() };
        assert_eq!(env.host_path(Path::new("../../../outside")).unwrap(), root.join("outside"), "relative to the cwd");
    }

    #[test]
    fn reads_a_fake_proc_tree() {
        let tmp = TempDir::new("proc");
        let dir = tmp.path().join("4242");
        fs::create_dir_all(dir.join("root/etc")).unwrap();
        fs::write(dir.join("environ"), b"PATH=/bin\0AWS_ACCESS_KEY_ID=AKIAFAKE\0AWS_SECRET_ACCESS_KEY=wJalrSECRET\0JAVA_TOOL_OPTIONS=-Daws.sessionToken=TOKSECRET\0DB_PASSWORD=hunter2\0").unwrap();
        fs::write(dir.join("cmdline"), b"java\0-Daws.secretKey=CMDSECRET\0Main\0").unwrap();
        fs::write(dir.join("status"), "Uid:\t1001\t1001\t1001\t1001\n").unwrap();
        fs::write(dir.join("comm"), "java\n").unwrap();
        fs::write(dir.join("root/etc/passwd"), "app:x:1001:100::/srv/app:/bin/sh\n").unwrap();

        let env = ProcessEnv::from_proc(tmp.path(), 4242).unwrap();
        assert_eq!(env.var("AWS_ACCESS_KEY_ID"), Some("AKIAFAKE"));
        assert!(matches!(env.vars.get("AWS_SECRET_ACCESS_KEY"), Some(Value::Secret(_))));
        assert_eq!(env.var("PATH"), None, "unrelated variables are dropped");
        assert_eq!(env.var("DB_PASSWORD"), None);
        assert_eq!(env.var("JAVA_TOOL_OPTIONS"), None, "option variables are parsed, not kept");
        assert_eq!(env.prop("aws.sessionToken"), Some("TOKSECRET"));
        assert_eq!(env.prop("aws.secretKey"), Some("CMDSECRET"));
        assert_eq!(env.user.as_deref(), Some("app"));
        assert_eq!(env.home, Some(PathBuf::from("/srv/app")), "no HOME: the passwd entry");
        let debug = format!("{env:?}");
        for secret in ["wJalrSECRET", "TOKSECRET", "CMDSECRET", "hunter2"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }

        let re = Regex::new("^java$").unwrap();
        assert_eq!(find_processes_in(tmp.path(), &re, 1), vec![(4242, "java".to_string())]);
        assert!(find_processes_in(tmp.path(), &re, 4242).is_empty(), "the exporter skips itself");
        let by_cmdline = Regex::new("secretKey").unwrap();
        assert_eq!(find_processes_in(tmp.path(), &by_cmdline, 1).len(), 1, "matches the full command line too");
    }

    #[test]
    fn read_errors_name_the_capability() {
        let e = proc_error(Path::new("/proc/1/environ"), 1, &io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.reason, ErrorReason::PermissionDenied);
        assert!(e.message.contains("CAP_SYS_PTRACE") && e.message.contains("same user"), "{e}");
        let e = proc_error(Path::new("/proc/1/environ"), 1, &io::Error::from_raw_os_error(3));
        assert_eq!(e.reason, ErrorReason::NotFound);
        let tmp = TempDir::new("noproc");
        assert_eq!(ProcessEnv::from_proc(tmp.path(), 99).unwrap_err().reason, ErrorReason::NotFound);
    }
}
