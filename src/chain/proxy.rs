//! Whether IMDS requests of a process would go through an HTTP proxy.
//!
//! Two implementations matter, and they disagree:
//! - botocore (`utils.py` `IMDSFetcher.__init__` -> `get_environ_proxies` ->
//!   `should_bypass_proxies`) takes the proxy for the `http` scheme from
//!   `http_proxy`/`HTTP_PROXY` and asks Python's `urllib.request.proxy_bypass`,
//!   which matches `no_proxy` entries as exact hosts or dot-suffixes only:
//!   a CIDR such as `169.254.0.0/16` does **not** bypass the proxy for botocore
//!   (botocore's own comment: "urllib only checks DNS suffix").
//! - curl (`lib/noproxy.c` `Curl_check_noproxy`, 7.86+) takes `http_proxy`
//!   (never upper-case `HTTP_PROXY`) or `ALL_PROXY`, and matches IP hosts by
//!   CIDR (`169.254.0.0/16`) or exact address, names by dot-suffix.
//!
//! The SDKs for Java never proxy IMDS (`Proxy.NO_PROXY` in their IMDS clients).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::env::ProcessEnv;

/// IMDS host when nothing overrides it (botocore `utils.py` `METADATA_BASE_URL`).
pub const IMDS_HOST: &str = "169.254.169.254";
/// IMDS host in IPv6 endpoint mode.
pub const IMDS_HOST_IPV6: &str = "fd00:ec2::254";

/// Which clients would send a process's IMDS requests through a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImdsProxy {
    /// botocore (Python SDK, AWS CLI v1).
    pub botocore: bool,
    /// curl (shell scripts, `ec2-metadata`-style helpers).
    pub curl: bool,
}

impl ImdsProxy {
    /// Some client would proxy IMDS: `aws_imds_proxy_bypass_missing`.
    pub fn any(self) -> bool {
        self.botocore || self.curl
    }
}

/// The IMDS host a process would call: from `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
/// else by `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`.
pub fn imds_host(env: &ProcessEnv) -> String {
    if let Some(url) = env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT").and_then(|u| reqwest::Url::parse(u).ok())
        && let Some(host) = url.host_str()
    {
        return host.trim_start_matches('[').trim_end_matches(']').to_string();
    }
    match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
        Some(mode) if mode.eq_ignore_ascii_case("ipv6") => IMDS_HOST_IPV6.to_string(),
        _ => IMDS_HOST.to_string(),
    }
}

/// Evaluates both clients for `env`.
pub fn imds_proxy(env: &ProcessEnv) -> ImdsProxy {
    let host = imds_host(env);
    let set = |name: &str| env.var(name).filter(|v| !v.is_empty());
    // urllib `getproxies_environment`: lower-case wins, empty values are ignored;
    // under CGI (`REQUEST_METHOD` set) upper-case `HTTP_PROXY` is ignored (httpoxy).
    let cgi = env.var("REQUEST_METHOD").is_some();
    let py_proxy = set("http_proxy").or_else(|| if cgi { None } else { set("HTTP_PROXY") });
    let py_no_proxy = set("no_proxy").or_else(|| set("NO_PROXY"));
    let botocore = py_proxy.is_some() && !py_no_proxy.is_some_and(|np| urllib_bypass(np, &host));
    // curl: `http_proxy` only in lower case, then `ALL_PROXY`/`all_proxy`.
    let curl_proxy = set("http_proxy").or_else(|| set("all_proxy")).or_else(|| set("ALL_PROXY"));
    let curl_no_proxy = set("no_proxy").or_else(|| set("NO_PROXY"));
    let curl = curl_proxy.is_some() && !curl_no_proxy.is_some_and(|np| curl_bypass(np, &host));
    ImdsProxy { botocore, curl }
}

/// Python `urllib.request.proxy_bypass_environment`: `*`, or an entry equal to
/// the host or a dot-suffix of it (leading dots ignored, case-insensitive).
pub fn urllib_bypass(no_proxy: &str, host: &str) -> bool {
    if no_proxy == "*" {
        return true;
    }
    let host = host.to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).filter(|n| !n.is_empty()).any(|name| {
        let name = name.trim_start_matches('.').to_ascii_lowercase();
        host == name || host.ends_with(&format!(".{name}"))
    })
}

/// curl `Curl_check_noproxy`: `*` alone, else per entry (comma or blank
/// separated): for an IP host an address or CIDR, for a name an exact or
/// dot-suffix match (a leading dot is ignored).
pub fn curl_bypass(no_proxy: &str, host: &str) -> bool {
    let no_proxy = no_proxy.trim();
    if no_proxy == "*" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|t| !t.is_empty()).any(|token| match ip {
        Some(ip) => cidr_match(ip, token),
        None => {
            let token = token.strip_prefix('.').unwrap_or(token).to_ascii_lowercase();
            let name = host.to_ascii_lowercase();
            name == token || name.ends_with(&format!(".{token}"))
        }
    })
}

/// curl `Curl_cidr4_match`/`Curl_cidr6_match`: no prefix length (or the full
/// one) means the exact address; a token that is not an address never matches.
fn cidr_match(ip: IpAddr, token: &str) -> bool {
    let (addr, bits) = match token.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(bits) => (a, bits),
            Err(_) => return false,
        },
        None => (token, 0),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    match ip {
        IpAddr::V4(ip) => {
            let Ok(net) = addr.parse::<Ipv4Addr>() else { return false };
            if bits > 32 {
                return false;
            }
            if bits == 0 || bits == 32 {
                return ip == net;
            }
            let mask = u32::MAX << (32 - bits);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        IpAddr::V6(ip) => {
            let Ok(net) = addr.parse::<Ipv6Addr>() else { return false };
            if bits > 128 {
                return false;
            }
            if bits == 0 || bits == 128 {
                return ip == net;
            }
            let mask = u128::MAX << (128 - bits);
            u128::from(ip) & mask == u128::from(net) & mask
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", IMDS_HOST, true),
            ("169.254.169.254", IMDS_HOST, true),
            ("localhost,169.254.169.254", IMDS_HOST, true),
            ("localhost 169.254.169.254", IMDS_HOST, true),
            ("169.254.0.0/16", IMDS_HOST, true),
            ("169.254.169.0/24", IMDS_HOST, true),
            ("10.0.0.0/8", IMDS_HOST, false),
            ("169.254.169.254/32", IMDS_HOST, true),
            ("169.254.169.253", IMDS_HOST, false),
            ("169.254", IMDS_HOST, false),
            (".169.254", IMDS_HOST, false),
            ("169.254.0.0/40", IMDS_HOST, false),
            ("localhost,.internal", IMDS_HOST, false),
            ("*,localhost", IMDS_HOST, false),
            ("fd00:ec2::/64", IMDS_HOST_IPV6, true),
            ("[fd00:ec2::254]", IMDS_HOST_IPV6, true),
            (".example.com", "imds.example.com", true),
            ("example.com", "imds.example.com", true),
            ("ample.com", "imds.example.com", false),
            ("EXAMPLE.com", "example.COM", true),
        ];
        for (no_proxy, host, want) in cases {
            assert_eq!(curl_bypass(no_proxy, host), *want, "curl no_proxy={no_proxy:?} host={host}");
        }
    }

    #[test]
    fn urllib_matching_knows_no_cidr() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", IMDS_HOST, true),
            ("169.254.169.254", IMDS_HOST, true),
            (" localhost , 169.254.169.254 ", IMDS_HOST, true),
            ("169.254.0.0/16", IMDS_HOST, false),
            ("169.254", IMDS_HOST, true),
            (".169.254", IMDS_HOST, true),
            ("254", IMDS_HOST, true),
            ("4.169.254", IMDS_HOST, false),
            ("localhost 169.254.169.254", IMDS_HOST, false),
            (".example.com", "imds.example.com", true),
            ("ample.com", "imds.example.com", false),
        ];
        for (no_proxy, host, want) in cases {
            assert_eq!(urllib_bypass(no_proxy, host), *want, "urllib no_proxy={no_proxy:?} host={host}");
        }
    }

    fn env(vars: &[(&str, &str)]) -> ProcessEnv {
        let mut env = ProcessEnv::default();
        for (k, v) in vars {
            env.set_var(k, *v);
        }
        env
    }

    #[test]
    fn which_clients_proxy_imds() {
        let p = "http://proxy.corp:3128";
        let cases: &[(&[(&str, &str)], ImdsProxy)] = &[
            (&[], ImdsProxy { botocore: false, curl: false }),
            (&[("HTTP_PROXY", p)], ImdsProxy { botocore: true, curl: false }),
            (&[("http_proxy", p)], ImdsProxy { botocore: true, curl: true }),
            (&[("http_proxy", p), ("NO_PROXY", "169.254.169.254")], ImdsProxy { botocore: false, curl: false }),
            (&[("http_proxy", p), ("no_proxy", "169.254.0.0/16")], ImdsProxy { botocore: true, curl: false }),
            (&[("http_proxy", p), ("no_proxy", ""), ("NO_PROXY", "*")], ImdsProxy { botocore: false, curl: false }),
            (&[("HTTP_PROXY", p), ("REQUEST_METHOD", "GET")], ImdsProxy { botocore: false, curl: false }),
            (&[("ALL_PROXY", p)], ImdsProxy { botocore: false, curl: true }),
            (&[("https_proxy", p)], ImdsProxy { botocore: false, curl: false }),
            (
                &[("http_proxy", p), ("no_proxy", "169.254.169.254"), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338")],
                ImdsProxy { botocore: true, curl: true },
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(imds_proxy(&env(vars)), *want, "{vars:?}");
        }
    }
}
