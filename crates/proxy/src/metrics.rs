//! Prometheus metrics with Istio's standard names and typed label sets, served on
//! the stats port (15090) at `/stats/prometheus`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Direction;

/// Istio's default millisecond buckets for `istio_request_duration_milliseconds`.
const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Size buckets (bytes) for `istio_request_bytes` / `istio_response_bytes`.
const SIZE_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// Labels of the per-request HTTP metrics (a subset of Istio's standard labels).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `source` (outbound side) or `destination` (inbound side).
    pub reporter: &'static str,
    /// Workload name of this pod.
    pub source_workload: String,
    /// Service FQDN, or `ip:port` for passthrough.
    pub destination_service: String,
    /// Upstream cluster name.
    pub destination_cluster: String,
    /// `http` or `grpc`.
    pub request_protocol: &'static str,
    /// HTTP status sent downstream, `0` if none.
    pub response_code: u16,
    /// Envoy response flags, `-` if none.
    pub response_flags: String,
}

/// Labels of the per-connection TCP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    /// `source` (outbound side) or `destination` (inbound side).
    pub reporter: &'static str,
    /// Workload name of this pod.
    pub source_workload: String,
    /// Service FQDN, or `ip:port` for passthrough.
    pub destination_service: String,
    /// Upstream cluster name.
    pub destination_cluster: String,
    /// Envoy response flags, `-` if none.
    pub response_flags: String,
}

/// Labels of the per-listener gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `virtualOutbound` or `virtualInbound`.
    pub listener: &'static str,
}

impl ListenerLabels {
    /// Labels for `direction`'s capture listener.
    pub fn of(direction: Direction) -> Self {
        ListenerLabels {
            listener: match direction {
                Direction::Outbound => "virtualOutbound",
                Direction::Inbound => "virtualInbound",
            },
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// All metrics of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `istio_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `istio_request_duration_milliseconds`.
    pub request_duration: HistogramFamily<RequestLabels>,
    /// `istio_request_bytes`.
    pub request_bytes: HistogramFamily<RequestLabels>,
    /// `istio_response_bytes`.
    pub response_bytes: HistogramFamily<RequestLabels>,
    /// `istio_tcp_connections_opened_total`.
    pub tcp_opened: Family<TcpLabels, Counter>,
    /// `istio_tcp_connections_closed_total`.
    pub tcp_closed: Family<TcpLabels, Counter>,
    /// `istio_tcp_sent_bytes_total` (bytes sent downstream).
    pub tcp_sent: Family<TcpLabels, Counter>,
    /// `istio_tcp_received_bytes_total` (bytes received from downstream).
    pub tcp_received: Family<TcpLabels, Counter>,
    /// `podrun_proxy_downstream_cx_active` per capture listener.
    pub downstream_active: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
    /// `podrun_proxy_downstream_cx_total` per capture listener.
    pub downstream_total: Family<ListenerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let request_duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS_MS));
        let request_bytes: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(|| Histogram::new(SIZE_BUCKETS));
        let response_bytes: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(|| Histogram::new(SIZE_BUCKETS));
        let tcp_opened = Family::default();
        let tcp_closed = Family::default();
        let tcp_sent = Family::default();
        let tcp_received = Family::default();
        let downstream_active = Family::default();
        let downstream_total = Family::default();
        registry.register("istio_requests", "Requests proxied", requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration",
            request_duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body size",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body size",
            response_bytes.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            tcp_closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent downstream on TCP connections",
            tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from downstream on TCP connections",
            tcp_received.clone(),
        );
        registry.register(
            "podrun_proxy_downstream_cx_active",
            "Active downstream connections on a capture listener",
            downstream_active.clone(),
        );
        registry.register(
            "podrun_proxy_downstream_cx",
            "Downstream connections accepted on a capture listener",
            downstream_total.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            request_bytes,
            response_bytes,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            downstream_active,
            downstream_total,
        }
    }

    /// Renders the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Active downstream connections over both capture listeners.
    pub fn active_downstream(&self) -> i64 {
        [Direction::Outbound, Direction::Inbound]
            .into_iter()
            .map(|d| {
                self.downstream_active
                    .get_or_create(&ListenerLabels::of(d))
                    .get()
            })
            .sum()
    }

    /// Records one finished HTTP request.
    pub fn record_request(&self, labels: &RequestLabels, duration_ms: u64, req: u64, resp: u64) {
        self.request_series(labels).record(duration_ms, req, resp);
    }

    /// The four per-request series of one label set, as shared handles: a
    /// connection keeps them while its requests end alike, and skips the look-ups.
    pub fn request_series(&self, labels: &RequestLabels) -> RequestSeries {
        RequestSeries {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.request_duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        }
    }

    /// Counts one accepted downstream connection; the returned guard keeps it in the
    /// active gauge until dropped.
    pub fn track_downstream(self: &std::sync::Arc<Self>, direction: Direction) -> ActiveGuard {
        let labels = ListenerLabels::of(direction);
        self.downstream_total.get_or_create(&labels).inc();
        self.downstream_active.get_or_create(&labels).inc();
        ActiveGuard {
            metrics: self.clone(),
            labels,
        }
    }
}

/// Handles on the per-request series of one label set (see [`Metrics::request_series`]).
#[derive(Debug, Clone)]
pub struct RequestSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl RequestSeries {
    /// Records one finished HTTP request.
    pub fn record(&self, duration_ms: u64, req: u64, resp: u64) {
        self.requests.inc();
        self.duration.observe(duration_ms as f64);
        self.request_bytes.observe(req as f64);
        self.response_bytes.observe(resp as f64);
    }
}

/// Keeps one connection in the active-connections gauge (see [`Metrics::track_downstream`]).
#[derive(Debug)]
pub struct ActiveGuard {
    metrics: std::sync::Arc<Metrics>,
    labels: ListenerLabels,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.metrics
            .downstream_active
            .get_or_create(&self.labels)
            .dec();
    }
}

/// Reads one sample value from Prometheus text, for tests and `podrun proxy` tooling:
/// the sum of every series named `name` whose labels include all of `labels`.
pub fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if !all {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_metrics_render_with_labels() {
        let m = Metrics::new();
        let labels = RequestLabels {
            reporter: "source",
            source_workload: "curl".into(),
            destination_service: "198.18.0.2:80".into(),
            destination_cluster: "PassthroughCluster".into(),
            request_protocol: "http",
            response_code: 503,
            response_flags: "UF".into(),
        };
        m.record_request(&labels, 7, 0, 100);
        m.record_request(&labels, 9, 0, 100);
        let text = m.encode();
        assert_eq!(
            sample_sum(
                &text,
                "istio_requests_total",
                &[("response_code", "503"), ("response_flags", "UF")]
            ),
            2.0
        );
        assert_eq!(
            sample_sum(
                &text,
                "istio_request_duration_milliseconds_count",
                &[("reporter", "source")]
            ),
            2.0
        );
        assert_eq!(sample_sum(&text, "istio_response_bytes_sum", &[]), 200.0);
        assert_eq!(
            sample_sum(&text, "istio_requests_total", &[("response_code", "200")]),
            0.0
        );
    }

    #[test]
    fn active_gauge_follows_guards() {
        let m = std::sync::Arc::new(Metrics::new());
        let a = m.track_downstream(Direction::Inbound);
        let b = m.track_downstream(Direction::Outbound);
        assert_eq!(m.active_downstream(), 2);
        drop(a);
        assert_eq!(m.active_downstream(), 1);
        drop(b);
        assert_eq!(m.active_downstream(), 0);
        let text = m.encode();
        assert_eq!(
            sample_sum(&text, "podrun_proxy_downstream_cx_total", &[]),
            2.0
        );
    }
}
