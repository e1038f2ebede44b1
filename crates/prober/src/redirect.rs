//! Redirects of `httpGet` probes and hooks. The kubelet (`RedirectChecker(false)`) and
//! Istio's app prober follow a redirect only while it stays on the first request's host
//! name (port and scheme may change), at most [`MAX_REDIRECTS`] times. A redirect to
//! another host ends the probe with the redirect response itself, which counts as
//! success (the kubelet's "Probe terminated redirects" warning).

use std::future::Future;

/// Redirects followed before giving up, as Go's HTTP client.
pub const MAX_REDIRECTS: usize = 10;

/// Where a probe's GET goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` rather than `http`.
    pub https: bool,
    /// The host name, without brackets for IPv6.
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// What to do with a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// GET this next.
    Follow(Url),
    /// Not followed: the redirect response is the probe's answer.
    Stop,
}

/// Whether `status` makes an HTTP client follow `Location` (Go's client: 301, 302,
/// 303, 307, 308; other 3xx answers are final).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The next request after a redirect from `current` to `location`. Only same-host
/// redirects are followed, so `current` is on the first request's host.
pub fn next(current: &Url, location: &str) -> Next {
    let location = location.trim();
    if location.is_empty() {
        return Next::Stop;
    }
    let url = if let Some((scheme, rest)) = location.split_once("://") {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Next::Stop,
        };
        match authority_and_path(rest, https) {
            Some(url) => url,
            None => return Next::Stop,
        }
    } else if let Some(rest) = location.strip_prefix("//") {
        match authority_and_path(rest, current.https) {
            Some(url) => url,
            None => return Next::Stop,
        }
    } else {
        Url {
            path: resolve_path(&current.path, location),
            ..current.clone()
        }
    };
    if url.host == current.host {
        Next::Follow(url)
    } else {
        Next::Stop
    }
}

/// GETs `first`, then each same-host redirect target in turn, with `get`, which answers
/// a URL with its status, its `Location` header, and what the caller keeps of the
/// response. The last response's value is the answer: a final status, or a redirect
/// that is not followed. More than [`MAX_REDIRECTS`] redirects are an error.
pub async fn follow<R, F>(first: Url, mut get: impl FnMut(Url) -> F) -> Result<R, String>
where
    F: Future<Output = Result<(u16, Option<String>, R), String>>,
{
    let mut url = first;
    for _ in 0..MAX_REDIRECTS {
        let (status, location, value) = get(url.clone()).await?;
        let Some(location) = location.filter(|_| is_redirect(status)) else {
            return Ok(value);
        };
        match next(&url, &location) {
            Next::Stop => return Ok(value),
            Next::Follow(to) => url = to,
        }
    }
    Err(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// `host[:port][/path]` (user info dropped) into a URL.
fn authority_and_path(rest: &str, https: bool) -> Option<Url> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) => (host, p.parse().ok()?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(Url {
        https,
        host: host.to_string(),
        port,
        path: resolve_path("/", path),
    })
}

/// A reference (`/abs`, `rel`, `?query`, or empty) resolved against `base`'s path; the
/// fragment is dropped, `.` and `..` segments are removed.
fn resolve_path(base: &str, reference: &str) -> String {
    let reference = reference.split('#').next().unwrap_or_default();
    let (base_path, base_query) = base.split_once('?').unwrap_or((base, ""));
    let joined = if reference.is_empty() {
        return if base_query.is_empty() {
            base_path.to_string()
        } else {
            format!("{base_path}?{base_query}")
        };
    } else if let Some(query) = reference.strip_prefix('?') {
        return format!("{base_path}?{query}");
    } else if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{reference}")
    };
    let (path, query) = joined.split_once('?').unwrap_or((&joined, ""));
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *seg {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(https: bool, host: &str, port: u16, path: &str) -> Url {
        Url {
            https,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn same_host_redirects_are_followed_with_port_scheme_and_path() {
        let cur = url(false, "10.0.0.5", 8080, "/redirect?loc=x");
        let cases = [
            ("/healthz", url(false, "10.0.0.5", 8080, "/healthz")),
            ("healthz", url(false, "10.0.0.5", 8080, "/healthz")),
            ("?ok=1", url(false, "10.0.0.5", 8080, "/redirect?ok=1")),
            ("http://10.0.0.5:9090/x", url(false, "10.0.0.5", 9090, "/x")),
            ("https://10.0.0.5/x#frag", url(true, "10.0.0.5", 443, "/x")),
            ("//10.0.0.5:81", url(false, "10.0.0.5", 81, "/")),
            ("/a/b/../c/./d", url(false, "10.0.0.5", 8080, "/a/c/d")),
        ];
        for (location, want) in cases {
            assert_eq!(next(&cur, location), Next::Follow(want), "{location}");
        }
        let nested = url(false, "h", 80, "/a/b/c");
        assert_eq!(
            next(&nested, "../d"),
            Next::Follow(url(false, "h", 80, "/a/d"))
        );
    }

    #[test]
    fn other_hosts_and_unusable_locations_stop() {
        let cur = url(false, "10.0.0.5", 8080, "/");
        for location in [
            "http://example.com/healthz",
            "http://10.0.0.6:8080/",
            "//other/x",
            "ftp://10.0.0.5/x",
            "http://10.0.0.5:port/x",
            "",
        ] {
            assert_eq!(next(&cur, location), Next::Stop, "{location}");
        }
    }

    #[test]
    fn ipv6_hosts_compare_without_brackets() {
        let cur = url(false, "fd00::5", 8080, "/");
        assert_eq!(
            next(&cur, "http://[fd00::5]:9000/ok"),
            Next::Follow(url(false, "fd00::5", 9000, "/ok"))
        );
        assert_eq!(next(&cur, "http://[fd00::6]/ok"), Next::Stop);
    }

    /// Runs `follow` against a fake server: each path answers (status, Location).
    fn run_follow(routes: &[(&str, u16, Option<&str>)]) -> (Result<String, String>, usize) {
        let mut requests = 0;
        let get = |url: Url| {
            requests += 1;
            let (_, status, location) = routes
                .iter()
                .find(|(path, ..)| *path == url.path)
                .copied()
                .unwrap_or((url.path.as_str(), 404, None));
            let answer = (
                status,
                location.map(String::from),
                format!("{} {status}", url.path),
            );
            std::future::ready(Ok(answer))
        };
        let result = block_on(follow(url(false, "h", 80, "/start"), get));
        (result, requests)
    }

    /// The futures here never wait: poll once with a no-op waker.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake server never waits"),
        }
    }

    #[test]
    fn follow_ends_at_a_final_answer_an_other_host_or_the_tenth_redirect() {
        let (r, n) = run_follow(&[
            ("/start", 302, Some("/a")),
            ("/a", 307, Some("b")),
            ("/b", 500, None),
        ]);
        assert_eq!((r, n), (Ok("/b 500".to_string()), 3));
        let (r, n) = run_follow(&[("/start", 301, Some("http://other/x"))]);
        assert_eq!((r, n), (Ok("/start 301".to_string()), 1));
        // A 3xx without Location, or one Go does not follow, is the answer.
        let (r, _) = run_follow(&[("/start", 302, None)]);
        assert_eq!(r, Ok("/start 302".to_string()));
        let (r, _) = run_follow(&[("/start", 304, Some("/a"))]);
        assert_eq!(r, Ok("/start 304".to_string()));
        let (r, n) = run_follow(&[("/start", 302, Some("/start"))]);
        assert_eq!((r, n), (Err("stopped after 10 redirects".to_string()), 10));
    }

    #[test]
    fn only_go_redirect_codes_are_followed() {
        for code in [301, 302, 303, 307, 308] {
            assert!(is_redirect(code));
        }
        for code in [300, 304, 305, 306, 200, 400] {
            assert!(!is_redirect(code));
        }
    }
}
