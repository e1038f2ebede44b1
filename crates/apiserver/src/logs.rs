//! `pods/log` from the node's CRI log files (`<pod dir>/<container>/<restart>.log`, lines
//! `<RFC 3339 time> <stream> <P|F> <text>`): which container (the API server's and the
//! kubelet's error texts), which instance (`previous`), and the options `tailLines`,
//! `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes` and `follow`.
//!
//! [`select`] and [`render`] are pure; [`stream`] reads the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::backend::LogOptions;
use crate::status::ApiError;

/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a `log` or `exec` request names (or the pod's only container), or the
/// API server's error: an unknown name, a missing name in a pod of several containers, a
/// pod bound to no node.
pub fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let containers = names(pod.pointer("/spec/containers"));
    let init = names(pod.pointer("/spec/initContainers"));
    let container = match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.iter().chain(&init).any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )));
            }
            c.to_owned()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::bad_request(msg));
        }
    };
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    Ok(container)
}

/// The container and the restart count whose log to read, or the API server's (and the
/// kubelet's) error for this pod and options.
pub fn select(pod: &Value, options: &LogOptions) -> Result<(String, i64), ApiError> {
    let container = container(pod, options.container.as_deref())?;
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|s| s["name"] == container.as_str());
    let Some(status) = status else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start, no container instance found"
        )));
    };
    let restarts = status["restartCount"].as_i64().unwrap_or(0);
    let state = &status["state"];
    let last = &status["lastState"];
    if options.previous {
        if last.get("terminated").is_none() || restarts == 0 {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            )));
        }
        return Ok((container, restarts - 1));
    }
    if state.get("running").is_some() || state.get("terminated").is_some() {
        return Ok((container, restarts));
    }
    if last.get("terminated").is_some() && restarts > 0 {
        return Ok((container, restarts - 1));
    }
    let reason = state
        .pointer("/waiting/reason")
        .and_then(Value::as_str)
        .unwrap_or("ContainerCreating");
    let why = match reason {
        "ErrImagePull" => "image can't be pulled".to_owned(),
        "ImagePullBackOff" => "trying and failing to pull image".to_owned(),
        r => r.to_owned(),
    };
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
    )))
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The time, as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// `F`: the line is complete; `P`: a part, continued on the next line.
    pub full: bool,
    /// The text.
    pub text: &'a str,
}

/// Parses a CRI log line.
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Line {
        time,
        stream,
        full: !tag.starts_with('P'),
        text,
    })
}

/// Renders the lines of a log file as `kubectl logs` receives them: since `since`, the
/// last `tailLines`, with timestamps if asked, cut at `limitBytes`.
pub fn render(content: &str, options: &LogOptions, since: Option<Timestamp>) -> Vec<u8> {
    let stream_ok = |s: &str| match options.stream.as_deref() {
        Some("Stdout") => s == "stdout",
        Some("Stderr") => s == "stderr",
        _ => true,
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut partial = false;
    for raw in content.lines() {
        let Some(l) = parse_line(raw) else { continue };
        if !stream_ok(l.stream) {
            continue;
        }
        if let Some(since) = since
            && l.time.parse::<Timestamp>().is_ok_and(|t| t < since)
        {
            continue;
        }
        if partial {
            if let Some(last) = lines.last_mut() {
                last.extend_from_slice(l.text.as_bytes());
            }
        } else {
            let mut out = Vec::new();
            if options.timestamps {
                out.extend_from_slice(l.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(l.text.as_bytes());
            lines.push(out);
        }
        if l.full
            && let Some(last) = lines.last_mut()
        {
            last.push(b'\n');
        }
        partial = !l.full;
    }
    if let Some(n) = options.tail_lines.filter(|n| *n >= 0) {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    let mut out: Vec<u8> = lines.concat();
    if let Some(limit) = options.limit_bytes.filter(|l| *l > 0) {
        out.truncate(limit as usize);
    }
    out
}

fn since_of(options: &LogOptions, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    if let Some(s) = options.since_seconds {
        return Ok(Some(
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .unwrap_or(now),
        ));
    }
    options
        .since_time
        .as_deref()
        .map(|t| {
            t.parse::<Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("sinceTime: {e}")))
        })
        .transpose()
}

fn file(dir: &Path, container: &str, restart: i64) -> PathBuf {
    dir.join(container).join(format!("{restart}.log"))
}

/// The log of `pod` as a byte stream; with `follow`, new lines follow until the container
/// instance is no longer the pod's current one or has terminated.
pub async fn stream(
    pod: &Value,
    dir: Option<PathBuf>,
    options: &LogOptions,
) -> Result<BoxStream<'static, Bytes>, ApiError> {
    let (container, restart) = select(pod, options)?;
    let Some(dir) = dir else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {:?} has no log on this node",
            pod.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        )));
    };
    let path = file(&dir, &container, restart);
    let since = since_of(options, podrun_store_sqlite::now())?;
    let content = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let first = Bytes::from(render(&content, options, since));
    let running = ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .any(|s| s["name"] == container.as_str() && s["state"].get("running").is_some());
    if !options.follow || options.previous || !running {
        return Ok(futures::stream::iter([first]).boxed());
    }
    // Follow: read what is appended, whole lines only, until the file stops growing and a
    // newer instance's file appears (a restart) or the stream is dropped.
    let mut tail_opts = options.clone();
    tail_opts.tail_lines = None;
    tail_opts.limit_bytes = None;
    let offset = content.len();
    let next = file(&dir, &container, restart + 1);
    let rest = futures::stream::unfold((path, offset), move |(path, mut offset)| {
        let tail_opts = tail_opts.clone();
        let next = next.clone();
        async move {
            loop {
                let content = tokio::fs::read(&path).await.ok()?;
                if content.len() > offset {
                    let end = content[offset..]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map(|i| offset + i + 1);
                    if let Some(end) = end {
                        let text = String::from_utf8_lossy(&content[offset..end]).into_owned();
                        offset = end;
                        let out = render(&text, &tail_opts, None);
                        if !out.is_empty() {
                            return Some((Bytes::from(out), (path, offset)));
                        }
                        continue;
                    }
                }
                if tokio::fs::metadata(&next).await.is_ok() {
                    return None;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    });
    Ok(futures::stream::iter([first]).chain(rest).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(state: Value) -> Value {
        json!({"metadata": {"name": "sleep-1"},
            "spec": {"nodeName": "podrun",
                "containers": [{"name": "sleep"}],
                "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy"}]},
            "status": {"containerStatuses": [{"name": "sleep", "restartCount": 1, "state": state,
                "lastState": {"terminated": {"exitCode": 0}}}]}})
    }

    fn opts(container: Option<&str>) -> LogOptions {
        LogOptions {
            container: container.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn containers_are_chosen_with_upstream_errors() {
        let running = pod(json!({"running": {}}));
        assert_eq!(
            select(&running, &opts(Some("sleep"))).unwrap(),
            ("sleep".into(), 1)
        );
        // One regular container is the default, as in the API server.
        assert_eq!(select(&running, &opts(None)).unwrap().0, "sleep");
        let mut two = running.clone();
        two["spec"]["containers"] = json!([{"name": "sleep"}, {"name": "web"}]);
        assert_eq!(
            select(&two, &opts(None)).unwrap_err().message,
            "a container name must be specified for pod sleep-1, choose one of: [sleep web] or one of the init containers: [istio-init istio-proxy]"
        );
        assert_eq!(
            select(&running, &opts(Some("web"))).unwrap_err().message,
            "container web is not valid for pod sleep-1"
        );
        let prev = LogOptions {
            previous: true,
            ..opts(Some("sleep"))
        };
        assert_eq!(select(&running, &prev).unwrap(), ("sleep".into(), 0));
        let waiting = pod(json!({"waiting": {"reason": "ImagePullBackOff"}}));
        let mut w = waiting.clone();
        w["status"]["containerStatuses"][0]["lastState"] = json!({});
        assert_eq!(
            select(&w, &opts(Some("sleep"))).unwrap_err().message,
            "container \"sleep\" in pod \"sleep-1\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            select(&running, &opts(Some("istio-proxy")))
                .unwrap_err()
                .message,
            "container \"istio-proxy\" in pod \"sleep-1\" is waiting to start, no container instance found"
        );
    }

    #[test]
    fn lines_render_with_options() {
        let content = "2026-12-07T19:00:00.000000001Z stdout F one\n\
                       2026-12-07T19:00:01.000000000Z stderr P tw\n\
                       2026-12-07T19:00:01.000000001Z stderr F o\n\
                       2026-12-07T19:00:02.000000000Z stdout F three\n";
        assert_eq!(
            render(content, &LogOptions::default(), None),
            b"one\ntwo\nthree\n"
        );
        let tail = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render(content, &tail, None),
            b"2026-12-07T19:00:02.000000000Z three\n"
        );
        let since: Timestamp = "2026-12-07T19:00:01Z".parse().unwrap();
        assert_eq!(
            render(content, &LogOptions::default(), Some(since)),
            b"two\nthree\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(render(content, &limit, None), b"one\nt");
        let stdout = LogOptions {
            stream: Some("Stdout".into()),
            ..Default::default()
        };
        assert_eq!(render(content, &stdout, None), b"one\nthree\n");
    }
}
