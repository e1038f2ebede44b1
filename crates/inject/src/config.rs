//! Injector configuration: the mesh-wide settings that Istio spreads over Helm values, the
//! mesh config and the injector ConfigMap, gathered in one struct with the same defaults.
//!
//! The YAML/JSON form uses camelCase keys and rejects unknown keys, so a typo in a config file
//! is an error rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which binaries the injected containers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Istio-compatible containers whose command is the podrun binary (`podrun proxy-init …`,
    /// `podrun proxy …`), so nothing but podrun has to be installed on the node.
    #[default]
    Podrun,
    /// Byte-for-byte Istio containers: the proxyv2 image's `pilot-agent` entrypoint.
    Istio,
}

/// The control-plane switch `ENABLE_NATIVE_SIDECARS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NativeSidecars {
    /// Native mode for every pod.
    True,
    /// Classic mode for every pod.
    False,
    /// Native iff every relevant kubelet is 1.33 or newer (Istio's default since 1.27).
    #[default]
    Auto,
}

/// Injection policy (`global.proxy.autoInject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Inject unless the pod opts out.
    #[default]
    Enabled,
    /// Inject only when the pod opts in.
    Disabled,
}

/// Traffic interception mode (`sidecar.istio.io/interceptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum InterceptionMode {
    /// NAT `REDIRECT` to the proxy's capture ports.
    #[default]
    #[serde(rename = "REDIRECT")]
    Redirect,
    /// `TPROXY` in the mangle table; the proxy needs `NET_ADMIN` and runs as root.
    #[serde(rename = "TPROXY")]
    Tproxy,
    /// No capture at all: no `istio-init` container.
    #[serde(rename = "NONE")]
    None,
}

impl InterceptionMode {
    /// The annotation / env spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "REDIRECT",
            Self::Tproxy => "TPROXY",
            Self::None => "NONE",
        }
    }

    /// Parses the annotation spelling (exact, upper case, as Istio's validator).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "REDIRECT" => Some(Self::Redirect),
            "TPROXY" => Some(Self::Tproxy),
            "NONE" => Some(Self::None),
            _ => None,
        }
    }
}

/// A Kubernetes label selector (`matchLabels` AND `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Requests and limits for the injected containers (`global.proxy.resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyResources {
    /// `resources.requests`; a `None` value drops the entry.
    #[serde(default)]
    pub requests: BTreeMap<String, Option<String>>,
    /// `resources.limits`; a `None` value drops the entry.
    #[serde(default)]
    pub limits: BTreeMap<String, Option<String>>,
}

impl Default for ProxyResources {
    fn default() -> Self {
        let map = |cpu: &str, mem: &str| {
            BTreeMap::from([
                ("cpu".to_owned(), Some(cpu.to_owned())),
                ("memory".to_owned(), Some(mem.to_owned())),
            ])
        };
        Self {
            requests: map("100m", "128Mi"),
            limits: map("2000m", "1024Mi"),
        }
    }
}

/// Mesh-wide injector settings. Every field has Istio's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Which binaries the injected containers run.
    pub runtime: Runtime,
    /// Path of the podrun binary inside the pod (used when `runtime` is `podrun`).
    pub podrun_path: String,
    /// Proxy image for `istio-proxy` and `istio-init` (`<hub>/proxyv2:<tag>`).
    pub proxy_image: String,
    /// `imagePullPolicy` for the injected containers, only written when set.
    pub image_pull_policy: Option<String>,
    /// `global.imagePullSecrets`, merged into the pod's own by name.
    pub image_pull_secrets: Vec<String>,
    /// `ENABLE_NATIVE_SIDECARS`.
    pub native_sidecars: NativeSidecars,
    /// `global.proxy.autoInject`.
    pub policy: Policy,
    /// Pods matching any of these are never injected unless they opt in explicitly.
    pub never_inject_selector: Vec<LabelSelector>,
    /// Pods matching any of these are injected unless they opt out explicitly.
    pub always_inject_selector: Vec<LabelSelector>,
    /// Control-plane revision written to `istio.io/rev`.
    pub revision: String,
    /// Namespace of the control plane (used for `CA_ADDR`).
    pub istio_namespace: String,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// `global.meshID`; the trust domain when unset.
    pub mesh_id: Option<String>,
    /// `global.multiCluster.clusterName`.
    pub cluster_name: String,
    /// `global.network`; empty means none.
    pub network: String,
    /// Outbound capture port (`proxyListenPort`).
    pub proxy_listen_port: u16,
    /// Inbound capture port (`proxyInboundListenPort`).
    pub proxy_inbound_listen_port: u16,
    /// Agent status port; 0 disables the proxy's probes.
    pub status_port: u16,
    /// Mesh interception mode.
    pub interception_mode: InterceptionMode,
    /// `global.proxy.includeIPRanges`.
    #[serde(rename = "includeIPRanges")]
    pub include_ip_ranges: String,
    /// `global.proxy.excludeIPRanges`.
    #[serde(rename = "excludeIPRanges")]
    pub exclude_ip_ranges: String,
    /// `global.proxy.includeInboundPorts`.
    pub include_inbound_ports: String,
    /// `global.proxy.excludeInboundPorts`.
    pub exclude_inbound_ports: String,
    /// `global.proxy.includeOutboundPorts`.
    pub include_outbound_ports: String,
    /// `global.proxy.excludeOutboundPorts`.
    pub exclude_outbound_ports: String,
    /// `global.proxy.logLevel` (Envoy log level).
    pub proxy_log_level: String,
    /// `global.proxy.componentLogLevel`.
    pub proxy_component_log_level: String,
    /// `global.logging.level` (agent and iptables tool).
    pub log_level: String,
    /// `global.logAsJson`.
    pub log_as_json: bool,
    /// Proxy and init resources.
    pub resources: ProxyResources,
    /// `global.proxy.startupProbe.enabled`.
    pub startup_probe_enabled: bool,
    /// `global.proxy.startupProbe.failureThreshold`.
    pub startup_probe_failure_threshold: u32,
    /// `global.proxy.holdApplicationUntilProxyStarts`.
    pub hold_application_until_proxy_starts: bool,
    /// `sidecarInjectorWebhook.rewriteAppHTTPProbe`.
    pub rewrite_app_http_probe: bool,
    /// Mesh `defaultConfig` (ProxyConfig) that per-pod `proxy.istio.io/config` is merged onto.
    pub default_proxy_config: serde_json::Map<String, serde_json::Value>,
    /// Extra `ISTIO_META_*`-style variables for the proxy and init containers.
    pub proxy_metadata: BTreeMap<String, String>,
    /// `global.proxy_init.forceApplyIptables`.
    pub force_apply_iptables: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            runtime: Runtime::default(),
            podrun_path: "/usr/local/bin/podrun".to_owned(),
            proxy_image: "docker.io/istio/proxyv2:1.28.0".to_owned(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            native_sidecars: NativeSidecars::default(),
            policy: Policy::default(),
            never_inject_selector: Vec::new(),
            always_inject_selector: Vec::new(),
            revision: "default".to_owned(),
            istio_namespace: "istio-system".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            mesh_id: None,
            cluster_name: "Kubernetes".to_owned(),
            network: String::new(),
            proxy_listen_port: 15001,
            proxy_inbound_listen_port: 15006,
            status_port: 15020,
            interception_mode: InterceptionMode::default(),
            include_ip_ranges: "*".to_owned(),
            exclude_ip_ranges: String::new(),
            include_inbound_ports: "*".to_owned(),
            exclude_inbound_ports: String::new(),
            include_outbound_ports: String::new(),
            exclude_outbound_ports: String::new(),
            proxy_log_level: "warning".to_owned(),
            proxy_component_log_level: "misc:error".to_owned(),
            log_level: "default:info".to_owned(),
            log_as_json: false,
            resources: ProxyResources::default(),
            startup_probe_enabled: true,
            startup_probe_failure_threshold: 600,
            hold_application_until_proxy_starts: false,
            rewrite_app_http_probe: true,
            default_proxy_config: serde_json::Map::new(),
            proxy_metadata: BTreeMap::new(),
            force_apply_iptables: false,
        }
    }
}

/// A configuration file could not be read as a [`MeshConfig`].
#[derive(Debug, thiserror::Error)]
#[error("invalid mesh config: {0}")]
pub struct ConfigError(String);

impl MeshConfig {
    /// Parses a YAML (or JSON) mesh config; missing keys keep their defaults.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_saphyr::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.revision.is_empty() {
            return Err(ConfigError("revision must not be empty".into()));
        }
        if self.proxy_image.is_empty() {
            return Err(ConfigError("proxyImage must not be empty".into()));
        }
        if self.runtime == Runtime::Podrun && self.podrun_path.is_empty() {
            return Err(ConfigError("podrunPath must not be empty".into()));
        }
        Ok(())
    }
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Whether `labels` satisfy this selector. An empty selector matches nothing, as Istio's
    /// never/always-inject selectors do.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.match_labels.is_empty() && self.match_expressions.is_empty() {
            return false;
        }
        let labels_ok = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        let exprs_ok = self.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| req.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // An unknown operator can never be satisfied; Kubernetes rejects it on write.
                _ => false,
            }
        });
        labels_ok && exprs_ok
    }
}
