//! Time as the API server writes it.

use k8s_openapi::jiff::Timestamp;

/// `t` as the API server writes a `metav1.Time`: RFC 3339 in UTC, whole seconds
/// (`2026-01-02T03:04:05Z`).
pub fn format_time(t: Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_in_utc() {
        let t: Timestamp = "2026-01-02T03:04:05.987654321+02:00".parse().expect("time");
        assert_eq!(format_time(t), "2026-01-02T01:04:05Z");
        assert_eq!(format_time(Timestamp::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
