//! Injection-related annotation and label keys, and the validation Istio applies to them
//! before rendering (`pkg/kube/inject/validate.go`): any failure aborts injection.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::config::InterceptionMode;
use podrun_model::quantity::Quantity;

/// Per-pod switch (label preferred, annotation deprecated).
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Per-pod native/classic override.
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
/// Injection record.
pub const STATUS: &str = "sidecar.istio.io/status";
/// Saved user overrides of the injected containers.
pub const OVERRIDES: &str = "proxy.istio.io/overrides";
/// Per-pod ProxyConfig.
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
/// Interception mode.
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// Status port of the agent.
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";
/// Readiness probe initial delay.
pub const READINESS_INITIAL_DELAY: &str = "readiness.status.sidecar.istio.io/initialDelaySeconds";
/// Readiness probe period.
pub const READINESS_PERIOD: &str = "readiness.status.sidecar.istio.io/periodSeconds";
/// Readiness probe failure threshold.
pub const READINESS_FAILURE_THRESHOLD: &str = "readiness.status.sidecar.istio.io/failureThreshold";
/// `-i`.
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// `-x`.
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
/// `-b`.
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
/// Added to `-d`.
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
/// `-q`.
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
/// `-o`.
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
/// `-c`.
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
/// `-k` (deprecated spelling).
pub const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
/// `-k`.
pub const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
/// Metrics merge switch.
pub const MERGE_METRICS: &str = "prometheus.istio.io/merge-metrics";
/// Extra scrape targets carried into `ISTIO_PROMETHEUS_ANNOTATIONS`.
pub const SCRAPE_TARGETS: &str = "prometheus.istio.io/scrape-targets";
/// Proxy CPU request.
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
/// Proxy memory request.
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// Proxy CPU limit.
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
/// Proxy memory limit.
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
/// Proxy image override.
pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
/// Proxy image variant.
pub const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
/// Envoy log level.
pub const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
/// Envoy component log level.
pub const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
/// Agent log level.
pub const AGENT_LOG_LEVEL: &str = "sidecar.istio.io/agentLogLevel";
/// Probe rewriting switch.
pub const REWRITE_APP_HTTP_PROBERS: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
/// Extra volumes (JSON map name → volume source).
pub const USER_VOLUME: &str = "sidecar.istio.io/userVolume";
/// Extra mounts (JSON map name → mount).
pub const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
/// Custom bootstrap configMap.
pub const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
/// Add `NET_BIND_SERVICE`.
pub const CAP_NET_BIND_SERVICE: &str = "sidecar.istio.io/capNetBindService";
/// Revision annotation written by the injector.
pub const REVISION: &str = "istio.io/rev";

/// Reads string annotations, ignoring non-string values (the API server rejects them anyway).
pub fn string_map(meta: Option<&Value>, field: &str) -> BTreeMap<String, String> {
    meta.and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The verdict on a `*` list (all), where one is allowed; `None` for any other list.
fn check_star(value: &str, allow_star: bool) -> Option<Result<(), String>> {
    (value.trim() == "*").then(|| {
        if allow_star {
            Ok(())
        } else {
            Err("\"*\" is not allowed here".into())
        }
    })
}

fn check_cidrs(value: &str, allow_star: bool) -> Result<(), String> {
    if let Some(verdict) = check_star(value, allow_star) {
        return verdict;
    }
    for item in split_list(value) {
        let (addr, prefix) = item
            .split_once('/')
            .ok_or_else(|| format!("{item:?} is not a CIDR (missing /prefix)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{item:?} is not a CIDR (bad address)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => {}
            _ => return Err(format!("{item:?} is not a CIDR (bad prefix length)")),
        }
    }
    Ok(())
}

fn check_ports(value: &str, allow_star: bool) -> Result<(), String> {
    if let Some(verdict) = check_star(value, allow_star) {
        return verdict;
    }
    for item in split_list(value) {
        item.parse::<u16>()
            .map_err(|_| format!("{item:?} is not a port number (0-65535)"))?;
    }
    Ok(())
}

fn check_interfaces(value: &str) -> Result<(), String> {
    for item in split_list(value) {
        if item.len() > 15 || item.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("{item:?} is not an interface name"));
        }
    }
    Ok(())
}

/// ProxyConfig fields accepted in `proxy.istio.io/config`; anything else is a typo.
const PROXY_CONFIG_FIELDS: &[&str] = &[
    "configPath",
    "binaryPath",
    "serviceCluster",
    "drainDuration",
    "parentShutdownDuration",
    "discoveryAddress",
    "discoveryRefreshDelay",
    "zipkinAddress",
    "statsdUdpAddress",
    "proxyAdminPort",
    "controlPlaneAuthPolicy",
    "customConfigFile",
    "statNameLength",
    "concurrency",
    "proxyBootstrapTemplatePath",
    "interceptionMode",
    "tracing",
    "envoyAccessLogService",
    "envoyMetricsService",
    "proxyMetadata",
    "runtimeValues",
    "statusPort",
    "extraStatTags",
    "gatewayTopology",
    "terminationDrainDuration",
    "meshId",
    "readinessProbe",
    "proxyStatsMatcher",
    "holdApplicationUntilProxyStarts",
    "caCertificatesPem",
    "image",
    "privateKeyProvider",
    "proxyHeaders",
    "fileFlushInterval",
    "fileFlushMinSizeKb",
    "sds",
    "statsCompression",
    "tracingServiceName",
];

/// Parses and checks a `proxy.istio.io/config` value (YAML or JSON).
pub fn parse_proxy_config(text: &str) -> Result<serde_json::Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| format!("not YAML/JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("must be a mapping of ProxyConfig fields".into());
    };
    for (key, v) in &map {
        if !PROXY_CONFIG_FIELDS.contains(&key.as_str()) {
            return Err(format!("unknown ProxyConfig field {key:?}"));
        }
        let ok = match key.as_str() {
            "holdApplicationUntilProxyStarts" => v.is_boolean(),
            "proxyMetadata" | "runtimeValues" => v
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string)),
            "concurrency" | "statNameLength" | "proxyAdminPort" | "statusPort" => v.is_u64(),
            "drainDuration"
            | "terminationDrainDuration"
            | "parentShutdownDuration"
            | "fileFlushInterval" => v.as_str().is_some_and(is_duration),
            "interceptionMode" => v.as_str().and_then(InterceptionMode::parse).is_some(),
            _ => true,
        };
        if !ok {
            return Err(format!(
                "ProxyConfig field {key:?} has an invalid value {v}"
            ));
        }
    }
    Ok(map)
}

/// A protobuf-JSON duration such as `5s` or `1.5s`, or a Go duration such as `1m30s`.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 || rest[..num_end].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[num_end..];
        let unit = ["ns", "us", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else { return false };
        rest = &rest[unit.len()..];
    }
    true
}

/// Validates every injection annotation Istio validates; the error names the annotation.
pub fn validate(annotations: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (key, value) in annotations {
        let result = match key.as_str() {
            INTERCEPTION_MODE => InterceptionMode::parse(value)
                .map(|_| ())
                .ok_or_else(|| "must be one of REDIRECT, TPROXY, NONE".to_owned()),
            STATUS_PORT => value
                .parse::<u16>()
                .map(|_| ())
                .map_err(|_| "must be an integer between 0 and 65535".to_owned()),
            READINESS_INITIAL_DELAY | READINESS_PERIOD | READINESS_FAILURE_THRESHOLD => value
                .parse::<u32>()
                .map(|_| ())
                .map_err(|_| "must be an unsigned 32-bit integer".to_owned()),
            INCLUDE_OUTBOUND_IP_RANGES => check_cidrs(value, true),
            EXCLUDE_OUTBOUND_IP_RANGES => check_cidrs(value, false),
            INCLUDE_INBOUND_PORTS => check_ports(value, true),
            EXCLUDE_INBOUND_PORTS | EXCLUDE_OUTBOUND_PORTS | INCLUDE_OUTBOUND_PORTS => {
                check_ports(value, false)
            }
            EXCLUDE_INTERFACES | KUBEVIRT_INTERFACES | REROUTE_VIRTUAL_INTERFACES => {
                check_interfaces(value)
            }
            MERGE_METRICS => parse_bool(value)
                .map(|_| ())
                .ok_or_else(|| "must be a boolean".to_owned()),
            PROXY_CONFIG => parse_proxy_config(value).map(|_| ()),
            PROXY_CPU | PROXY_MEMORY | PROXY_CPU_LIMIT | PROXY_MEMORY_LIMIT => {
                Quantity::parse(value)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            USER_VOLUME | USER_VOLUME_MOUNT => {
                serde_json::from_str::<serde_json::Map<String, Value>>(value)
                    .map(|_| ())
                    .map_err(|e| format!("must be a JSON object: {e}"))
            }
            _ => Ok(()),
        };
        result.map_err(|msg| (key.clone(), msg))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(key: &str, value: &str) -> Result<(), (String, String)> {
        validate(&BTreeMap::from([(key.to_owned(), value.to_owned())]))
    }

    #[test]
    fn validation_follows_istio_rules() {
        assert!(one(EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8, 192.168.1.0/24").is_ok());
        assert!(one(EXCLUDE_OUTBOUND_IP_RANGES, "*").is_err());
        assert!(one(INCLUDE_OUTBOUND_IP_RANGES, "*").is_ok());
        assert!(one(INCLUDE_OUTBOUND_IP_RANGES, "").is_ok());
        assert!(one(INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.1").is_err());
        assert!(one(EXCLUDE_INBOUND_PORTS, "8080,9090").is_ok());
        assert!(one(EXCLUDE_INBOUND_PORTS, "*").is_err());
        assert!(one(EXCLUDE_INBOUND_PORTS, "70000").is_err());
        assert!(one(INTERCEPTION_MODE, "redirect").is_err());
        assert!(one(STATUS_PORT, "0").is_ok());
        assert!(one(STATUS_PORT, "-1").is_err());
        assert!(one(PROXY_CPU, "200m").is_ok());
        assert!(one(PROXY_CPU, "lots").is_err());
        assert!(one(PROXY_CONFIG, "holdApplicationUntilProxyStarts: true").is_ok());
        assert!(one(PROXY_CONFIG, "holdApplicationUntilProxyStart: true").is_err());
        assert!(one(PROXY_CONFIG, r#"{"drainDuration":"23s"}"#).is_ok());
        assert!(one(PROXY_CONFIG, r#"{"drainDuration":"soon"}"#).is_err());
        assert!(one(MERGE_METRICS, "nope").is_err());
    }
}
