//! The embedded DNS server over real loopback sockets: cluster answers over UDP and
//! TCP, NXDOMAIN for unknown cluster names, and forwarding of other names to an
//! upstream resolver (here a fake one on loopback that answers with a marker address).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use podrun_net::dns::{DnsServer, DnsView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

async fn ask_udp(server: SocketAddr, q: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("DNS answer within 5s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, q: &Message) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let bytes = q.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).await.unwrap();
    Message::from_vec(&reply).unwrap()
}

fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// A fake upstream: answers every query with 192.0.2.99.
async fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        // Bounded: the test sends only a few queries.
        for _ in 0..16 {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.add_queries(q.queries.clone());
            let name = q.queries[0].name().clone();
            r.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 99))),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn cluster_names_are_answered_and_the_rest_forwarded() {
    let view = Arc::new(RwLock::new(DnsView::default()));
    view.write().unwrap().services.insert(
        ("default".into(), "web".into()),
        vec![Ipv4Addr::new(198, 19, 0, 1)],
    );
    let upstream = fake_upstream().await;
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        view.clone(),
        "cluster.local",
        &[upstream],
        None,
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let r = ask_udp(
        addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(addresses(&r), [Ipv4Addr::new(198, 19, 0, 1)]);

    let r = ask_tcp(
        addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&r), [Ipv4Addr::new(198, 19, 0, 1)]);

    // AAAA of an existing name: NOERROR without answers, so resolvers do not give up.
    let r = ask_udp(
        addr,
        &query("web.default.svc.cluster.local.", RecordType::AAAA),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());

    let r = ask_udp(
        addr,
        &query("nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let r = ask_udp(
        addr,
        &query("10-1-2-3.default.pod.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&r), [Ipv4Addr::new(10, 1, 2, 3)]);

    // Changes to the view show at once.
    view.write()
        .unwrap()
        .services
        .remove(&("default".into(), "web".into()));
    let r = ask_udp(
        addr,
        &query("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let r = ask_udp(addr, &query("example.org.", RecordType::A)).await;
    assert_eq!(addresses(&r), [Ipv4Addr::new(192, 0, 2, 99)]);
}

#[tokio::test]
async fn garbage_gets_formerr_and_silent_upstreams_servfail() {
    // An upstream that never answers: a bound socket nobody reads.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(RwLock::new(DnsView::default())),
        "cluster.local",
        &[silent.local_addr().unwrap()],
        None,
    )
    .await
    .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&[0xab, 0xcd, 0xff], server.local_addr())
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 0xabcd);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    let r = ask_udp(server.local_addr(), &query("example.org.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn names_published_by_live_peers_are_answered_and_dead_ones_ignored() {
    let peers = tempfile::tempdir().unwrap();
    // pid 1 always runs; 999999999 never does.
    std::fs::write(peers.path().join("1"), "svc other peer 198.19.9.9\n").unwrap();
    std::fs::write(
        peers.path().join("999999999"),
        "svc other gone 198.19.9.8\n",
    )
    .unwrap();
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(RwLock::new(DnsView::default())),
        "cluster.local",
        &[],
        Some(peers.path()),
    )
    .await
    .unwrap();
    let r = ask_udp(
        server.local_addr(),
        &query("peer.other.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&r), [Ipv4Addr::new(198, 19, 9, 9)]);
    let r = ask_udp(
        server.local_addr(),
        &query("gone.other.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}
