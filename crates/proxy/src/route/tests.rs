//! Table tests for the pure routing, sniffing and local-reply decisions.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::config::{KnownService, OutboundPolicy, ProxyConfig};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.pod_ports.insert(8080);
    c.tcp_ports.insert(6379);
    c.services.insert(
        addr("198.18.100.1:8000"),
        KnownService {
            fqdn: "httpbin.default.svc.cluster.local".into(),
            protocol: None,
        },
    );
    c.services.insert(
        addr("198.18.100.2:5432"),
        KnownService {
            fqdn: "db.default.svc.cluster.local".into(),
            protocol: Some(DeclaredProtocol::Tcp),
        },
    );
    c
}

#[test]
fn connection_plans() {
    let out = addr("0.0.0.0:15001");
    let inb = addr("0.0.0.0:15006");
    let proxy = |cluster, detection| ConnectionPlan::Proxy { cluster, detection };
    let cases: Vec<(Direction, SocketAddr, &str, ConnectionPlan)> = vec![
        (
            Direction::Outbound,
            out,
            "198.18.0.9:80",
            proxy(Cluster::Passthrough, Detection::Sniff),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.100.1:8000",
            proxy(
                Cluster::Outbound {
                    port: 8000,
                    fqdn: "httpbin.default.svc.cluster.local".into(),
                },
                Detection::Sniff,
            ),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.100.2:5432",
            proxy(
                Cluster::Outbound {
                    port: 5432,
                    fqdn: "db.default.svc.cluster.local".into(),
                },
                Detection::Tcp,
            ),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:3306",
            proxy(Cluster::Passthrough, Detection::Tcp),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:25",
            proxy(Cluster::Passthrough, Detection::Tcp),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:53",
            proxy(Cluster::Passthrough, Detection::Tcp),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:27017",
            proxy(Cluster::Passthrough, Detection::Tcp),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:6379",
            proxy(Cluster::Passthrough, Detection::Tcp),
        ),
        (
            Direction::Outbound,
            out,
            "127.0.0.1:15001",
            ConnectionPlan::Close(CloseReason::ListenerLoop),
        ),
        (
            Direction::Outbound,
            out,
            "198.18.0.9:15001",
            ConnectionPlan::Close(CloseReason::ListenerLoop),
        ),
        (
            Direction::Inbound,
            inb,
            "198.18.0.5:8080",
            proxy(Cluster::Inbound { port: 8080 }, Detection::Sniff),
        ),
        (
            Direction::Inbound,
            inb,
            "198.18.0.5:9090",
            proxy(Cluster::InboundPassthrough, Detection::Sniff),
        ),
        (
            Direction::Inbound,
            inb,
            "198.18.0.5:15006",
            ConnectionPlan::Close(CloseReason::ListenerLoop),
        ),
    ];
    let c = config();
    for (dir, listener, dst, want) in cases {
        assert_eq!(
            plan_connection(&c, dir, listener, addr(dst)),
            want,
            "{dir:?} {dst}"
        );
    }
}

#[test]
fn registry_only_black_holes_unknown_destinations() {
    let mut c = config();
    c.outbound_policy = OutboundPolicy::RegistryOnly;
    let plan = plan_connection(
        &c,
        Direction::Outbound,
        addr("0.0.0.0:15001"),
        addr("198.18.0.9:80"),
    );
    assert_eq!(
        plan,
        ConnectionPlan::Proxy {
            cluster: Cluster::BlackHole,
            detection: Detection::Sniff
        }
    );
    // Known services still route.
    let plan = plan_connection(
        &c,
        Direction::Outbound,
        addr("0.0.0.0:15001"),
        addr("198.18.100.1:8000"),
    );
    assert!(matches!(
        plan,
        ConnectionPlan::Proxy {
            cluster: Cluster::Outbound { .. },
            ..
        }
    ));
}

#[test]
fn cluster_names_and_routes() {
    let cases = [
        (
            Cluster::Outbound {
                port: 8000,
                fqdn: "httpbin.default.svc.cluster.local".into(),
            },
            "outbound|8000||httpbin.default.svc.cluster.local",
            "default",
        ),
        (Cluster::Passthrough, "PassthroughCluster", "allow_any"),
        (Cluster::Inbound { port: 8080 }, "inbound|8080||", "default"),
        (
            Cluster::InboundPassthrough,
            "InboundPassthroughCluster",
            "default",
        ),
        (Cluster::BlackHole, "BlackHoleCluster", "block_all"),
    ];
    for (cluster, name, route) in cases {
        assert_eq!(cluster.to_string(), name);
        assert_eq!(cluster.route_name(), route);
    }
}

#[test]
fn sniffing_table() {
    let cases: &[(&[u8], Sniffed)] = &[
        (b"", Sniffed::NeedMore),
        (b"G", Sniffed::NeedMore),
        (b"GE", Sniffed::NeedMore),
        (b"GET", Sniffed::NeedMore),
        (b"GET ", Sniffed::Http1),
        (b"GET / HTTP/1.1\r\n", Sniffed::Http1),
        (b"POST /x HTTP/1.1\r\n", Sniffed::Http1),
        (b"PUT /x", Sniffed::Http1),
        (b"HEAD / HTTP/1.0", Sniffed::Http1),
        (b"DELETE /a", Sniffed::Http1),
        (b"OPTIONS * HTTP/1.1", Sniffed::Http1),
        (b"PATCH /", Sniffed::Http1),
        (b"CONNECT a:443 HTTP/1.1", Sniffed::Http1),
        (b"TRACE /", Sniffed::Http1),
        (b"P", Sniffed::NeedMore),
        (b"PRI * HTTP/2.0", Sniffed::NeedMore),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Sniffed::Http2),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", Sniffed::Http2),
        (b"PRI * HTTP/1.1", Sniffed::Opaque),
        (b"\x16", Sniffed::NeedMore),
        (b"\x16\x03\x01\x02\x00", Sniffed::Tls),
        (b"\x16\x02", Sniffed::Opaque),
        (b"get / HTTP/1.1", Sniffed::Opaque),
        (b"GETX", Sniffed::Opaque),
        (b"SSH-2.0-OpenSSH", Sniffed::Opaque),
        (b"*1\r\n$4\r\nPING\r\n", Sniffed::Opaque),
        (b"hello", Sniffed::Opaque),
        (b"\x00\x00\x00", Sniffed::Opaque),
    ];
    for (buf, want) in cases {
        assert_eq!(sniff(buf), *want, "{:?}", String::from_utf8_lossy(buf));
    }
}

/// Builds a minimal TLS 1.2 ClientHello record, optionally with an SNI extension.
pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    // An unrelated extension first (supported_groups), so the parser must skip it.
    exts.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]);
    if let Some(name) = sni {
        let n = name.as_bytes();
        let entry_len = 3 + n.len();
        exts.extend_from_slice(&[0x00, 0x00]);
        exts.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(entry_len as u16).to_be_bytes());
        exts.push(0);
        exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
        exts.extend_from_slice(n);
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[test]
fn sni_extraction() {
    let hello = client_hello(Some("Example.COM"));
    assert_eq!(sniff(&hello), Sniffed::Tls);
    assert_eq!(parse_sni(&hello), Sni::Found("example.com".into()));
    assert_eq!(parse_sni(&client_hello(None)), Sni::Absent);
    for cut in [0, 3, 5, 20, hello.len() - 1] {
        assert_eq!(parse_sni(&hello[..cut]), Sni::NeedMore, "cut at {cut}");
    }
    assert_eq!(parse_sni(b"\x17\x03\x03\x00\x01\x00"), Sni::Invalid);
    // A record that claims a ClientHello but whose fields overrun it.
    assert_eq!(
        parse_sni(b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03"),
        Sni::Invalid
    );
}

#[test]
fn response_flags_render_in_envoy_order() {
    assert_eq!(ResponseFlags::empty().to_string(), "-");
    let f =
        ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED | ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
    assert_eq!(f.to_string(), "UF,URX");
    let f =
        ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION | ResponseFlags::UPSTREAM_REQUEST_TIMEOUT;
    assert_eq!(f.to_string(), "UT,DC");
    assert!(f.contains(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT));
    assert!(!f.contains(ResponseFlags::NO_ROUTE_FOUND));
}

#[test]
fn local_replies() {
    let r = local_reply(&UpstreamFailure::ConnectFailed {
        message: "Connection refused".into(),
    });
    assert_eq!(r.status, 503);
    assert_eq!(r.flags.to_string(), "UF");
    assert_eq!(
        r.details,
        "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
    );
    assert_eq!(
        r.transport_failure.as_deref(),
        Some("delayed_connect_error:_Connection_refused")
    );
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
    );
    let r = local_reply(&UpstreamFailure::ResetBeforeHeaders);
    assert_eq!((r.status, r.flags.to_string()), (503, "UC".to_string()));
    assert!(
        r.details
            .starts_with("upstream_reset_before_response_started{")
    );
    let r = local_reply(&UpstreamFailure::ResponseTimeout);
    assert_eq!((r.status, r.flags.to_string()), (504, "UT".to_string()));
    let r = local_reply(&UpstreamFailure::NoRoute);
    assert_eq!((r.status, r.flags.to_string()), (502, "NR".to_string()));
    let r = local_reply(&UpstreamFailure::ConnectTimeout);
    assert_eq!((r.status, r.flags.to_string()), (503, "UF".to_string()));
    let r = local_reply(&UpstreamFailure::ProtocolError);
    assert_eq!((r.status, r.flags.to_string()), (502, "UPE".to_string()));
    assert!(!r.details.contains(' '));
}

#[test]
fn tcp_connect_failure_is_uf_urx() {
    let (flags, reason) = tcp_connect_failure(&UpstreamFailure::ConnectFailed {
        message: "Connection refused".into(),
    });
    assert_eq!(flags.to_string(), "UF,URX");
    assert_eq!(
        reason.as_deref(),
        Some("delayed_connect_error:_Connection_refused")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// Sniffing and SNI parsing never panic, and sniffing is monotone: once a prefix
    /// is classified, appending bytes never changes the verdict.
    #[test]
    fn sniffing_is_total_and_stable(buf in proptest::collection::vec(any::<u8>(), 0..64), extra in proptest::collection::vec(any::<u8>(), 0..16)) {
        let first = sniff(&buf);
        let _ = parse_sni(&buf);
        if first != Sniffed::NeedMore {
            let mut longer = buf.clone();
            longer.extend_from_slice(&extra);
            prop_assert_eq!(sniff(&longer), first);
        }
    }

    /// Any prefix of a known protocol start is either NeedMore or already decided right.
    #[test]
    fn prefixes_of_known_starts_never_misclassify(cut in 0usize..24, which in 0usize..3) {
        let full: &[u8] = match which {
            0 => H2_PREFACE,
            1 => b"OPTIONS * HTTP/1.1\r\n\r\n",
            _ => b"\x16\x03\x01\x00\x10",
        };
        let cut = cut.min(full.len());
        let got = sniff(&full[..cut]);
        let want = sniff(full);
        prop_assert!(got == Sniffed::NeedMore || got == want, "{:?} vs {:?}", got, want);
    }

    /// Corrupting a ClientHello never panics the SNI parser.
    #[test]
    fn sni_parser_survives_corruption(name in "[a-z]{1,20}(\\.[a-z]{1,10}){0,3}", pos in any::<usize>(), byte in any::<u8>()) {
        let mut hello = client_hello(Some(&name));
        prop_assert_eq!(parse_sni(&hello), Sni::Found(name.clone()));
        let i = pos % hello.len();
        hello[i] = byte;
        let _ = parse_sni(&hello);
        hello.truncate(i);
        let _ = parse_sni(&hello);
    }
}
