//! Registry credentials from docker config JSON (`kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg` secrets), matched to an image as the kubelet's keyring does.

use std::collections::BTreeMap;

use base64::Engine as _;

/// A username and password for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl Credentials {
    /// `Basic base64(user:pass)`.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// A stable hash of the credentials, recorded with a pull (never the secret itself).
    pub fn fingerprint(&self) -> String {
        crate::digest::Digest::of(format!("{}\0{}", self.username, self.password).as_bytes())
            .to_string()
    }
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

/// Credentials keyed by registry location, matched longest first.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<(String, String, Credentials)>,
}

impl Keyring {
    /// Adds the entries of a `.dockerconfigjson` (`{"auths": {...}}`) or `.dockercfg` (`{...}`) document.
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("invalid docker config: {e}"))?;
        let auths = v.get("auths").cloned().unwrap_or(v);
        let map: BTreeMap<String, Entry> =
            serde_json::from_value(auths).map_err(|e| format!("invalid docker config: {e}"))?;
        for (key, e) in map {
            let (mut username, mut password) = (e.username, e.password);
            if !e.auth.is_empty() {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(e.auth.trim())
                    .map_err(|err| format!("invalid docker config: auth for {key}: {err}"))?;
                let raw = String::from_utf8_lossy(&raw).into_owned();
                let (u, p) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("invalid docker config: auth for {key}: no ':'"))?;
                username = u.to_owned();
                password = p.to_owned();
            }
            let (host, path) = normalise_key(&key);
            self.entries
                .push((host, path, Credentials { username, password }));
        }
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.0.len() + e.1.len()));
        Ok(())
    }

    /// Credentials matching `domain/path`, most specific first.
    pub fn lookup(&self, domain: &str, path: &str) -> Vec<Credentials> {
        self.entries
            .iter()
            .filter(|(host, kpath, _)| host_matches(host, domain) && path_prefix(kpath, path))
            .map(|(_, _, c)| c.clone())
            .collect()
    }

    /// Whether no credentials are known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn normalise_key(key: &str) -> (String, String) {
    let k = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, p),
        None => (k, ""),
    };
    let path = path.trim_end_matches('/');
    let path = path
        .strip_prefix("v1")
        .or_else(|| path.strip_prefix("v2"))
        .map(|p| p.trim_start_matches('/'))
        .unwrap_or(path);
    let host = if host == "index.docker.io" {
        "docker.io"
    } else {
        host
    };
    (host.to_owned(), path.to_owned())
}

fn host_matches(pattern: &str, domain: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h.to_owned(), p.to_owned()),
            _ => (s.to_owned(), String::new()),
        }
    };
    let (ph, pp) = split(pattern);
    let (dh, dp) = split(domain);
    if pp != dp {
        return false;
    }
    let pl: Vec<&str> = ph.split('.').collect();
    let dl: Vec<&str> = dh.split('.').collect();
    pl.len() == dl.len() && pl.iter().zip(&dl).all(|(p, d)| glob(p, d))
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len()
                && s.starts_with(pre)
                && glob_tail(post, &s[pre.len()..])
        }
    }
}

fn glob_tail(pattern: &str, s: &str) -> bool {
    (0..=s.len()).any(|i| s.is_char_boundary(i) && glob(pattern, &s[i..]))
}

fn path_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_matches_like_the_kubelet() {
        let mut k = Keyring::default();
        let auth = base64::engine::general_purpose::STANDARD.encode("u2:p2");
        k.add_docker_config(
            format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"username":"u1","password":"p1"}},
                "https://127.0.0.1:5000/v2/team":{{"auth":"{auth}"}},
                "*.example.org":{{"username":"g","password":"x"}},
                "https://index.docker.io/v1/":{{"username":"hub","password":"h"}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let users = |d: &str, p: &str| {
            k.lookup(d, p)
                .into_iter()
                .map(|c| c.username)
                .collect::<Vec<_>>()
        };
        assert_eq!(users("127.0.0.1:5000", "team/app"), ["u2", "u1"]);
        assert_eq!(users("127.0.0.1:5000", "busybox"), ["u1"]);
        assert!(users("127.0.0.1:5001", "busybox").is_empty());
        assert_eq!(users("r.example.org", "x"), ["g"]);
        assert!(users("a.r.example.org", "x").is_empty());
        assert_eq!(users("docker.io", "library/busybox"), ["hub"]);
        assert!(k.add_docker_config(b"{").is_err());
    }
}
