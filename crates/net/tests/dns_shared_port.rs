//! The cluster DNS server's sockets: several podruns serve the same address and port at
//! once, one leaving does not interrupt the others, and the address may be bound before
//! any interface has it (the bridge gets it with the first pod).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use podrun_net::dns::{DnsServer, DnsView};
use tokio::net::UdpSocket;

fn view_with(name: &str, ip: Ipv4Addr) -> Arc<RwLock<DnsView>> {
    let view = Arc::new(RwLock::new(DnsView::default()));
    view.write()
        .unwrap()
        .services
        .insert(("default".into(), name.into()), vec![ip]);
    view
}

/// One UDP query from a fresh source port; the response code, or `None` after 2 s.
async fn ask(server: SocketAddr, name: &str) -> Option<ResponseCode> {
    Some(
        ask_from("127.0.0.1", server, name)
            .await?
            .metadata
            .response_code,
    )
}

/// One UDP query from address `from`; the answer, or `None` after 2 s.
async fn ask_from(from: &str, server: SocketAddr, name: &str) -> Option<Message> {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let sock = UdpSocket::bind((from, 0)).await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

fn first_address(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test]
async fn a_query_is_answered_from_the_view_of_the_podrun_whose_pod_asked() {
    // This server's pods include 127.0.0.2; a live peer (pid 1) publishes the same
    // Service name with another ClusterIP for its pod 127.0.0.3.
    let peers = tempfile::tempdir().unwrap();
    std::fs::write(
        peers.path().join("1"),
        "svc default web 198.19.9.9\nclient 127.0.0.3\n",
    )
    .unwrap();
    let view = view_with("web", Ipv4Addr::new(198, 19, 0, 1));
    view.write()
        .unwrap()
        .clients
        .insert(Ipv4Addr::new(127, 0, 0, 2));
    let server = DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        view,
        "cluster.local",
        &[],
        Some(peers.path()),
    )
    .unwrap();
    let name = "web.default.svc.cluster.local.";
    for (from, want) in [
        ("127.0.0.2", [198, 19, 0, 1]),
        ("127.0.0.3", [198, 19, 9, 9]),
        // A client nobody claims: this view first.
        ("127.0.0.4", [198, 19, 0, 1]),
    ] {
        let m = ask_from(from, server.local_addr(), name).await.unwrap();
        assert_eq!(first_address(&m), Some(Ipv4Addr::from(want)), "from {from}");
    }
}

#[tokio::test]
async fn two_servers_share_a_port_and_the_survivor_answers_every_query() {
    let first = DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        view_with("web", Ipv4Addr::new(198, 19, 0, 1)),
        "cluster.local",
        &[],
        None,
    )
    .unwrap();
    let addr = first.local_addr();
    let second = DnsServer::bind(
        addr,
        view_with("web", Ipv4Addr::new(198, 19, 0, 1)),
        "cluster.local",
        &[],
        None,
    )
    .expect("a second server binds the same address and port");
    // Queries from many source ports reach both; each answers.
    for _ in 0..20 {
        assert_eq!(
            ask(addr, "web.default.svc.cluster.local.").await,
            Some(ResponseCode::NoError)
        );
    }
    drop(first);
    // With the first gone, not one query goes unanswered.
    for _ in 0..50 {
        assert_eq!(
            ask(addr, "web.default.svc.cluster.local.").await,
            Some(ResponseCode::NoError)
        );
    }
    drop(second);
}

#[tokio::test]
async fn the_server_binds_an_address_no_interface_has_yet() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test binds port 53 and needs root"
    );
    // TEST-NET-1: on no interface of this machine.
    let addr: SocketAddr = "192.0.2.53:53".parse().unwrap();
    let server = DnsServer::bind(
        addr,
        Arc::new(RwLock::new(DnsView::default())),
        "cluster.local",
        &[],
        None,
    )
    .expect("bound before the address exists");
    assert_eq!(server.local_addr(), addr);
}

#[tokio::test]
async fn a_query_from_a_pod_whose_podrun_publishes_late_gets_the_owners_answer() {
    // Two servers share the port. The owner (a live peer, pid 1, for this process's
    // other server) lists its new pod 127.0.0.5 only after the pod's first query has
    // already reached the other server, which has a Service of the same name with
    // another ClusterIP and does not know `api` at all.
    let peers = tempfile::tempdir().unwrap();
    let other = DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        view_with("web", Ipv4Addr::new(198, 19, 0, 1)),
        "cluster.local",
        &[],
        Some(peers.path()),
    )
    .unwrap();
    let addr = other.local_addr();
    let owner_view = DnsView::parse(
        "svc default web 198.19.9.9\nsvc default api 198.19.9.10\nclient 127.0.0.5\n",
    );
    let web = tokio::spawn(ask_from(
        "127.0.0.5",
        addr,
        "web.default.svc.cluster.local.",
    ));
    let api = tokio::spawn(ask_from(
        "127.0.0.5",
        addr,
        "api.default.svc.cluster.local.",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The owner starts serving the same port and publishes its view (atomically).
    let owner = DnsServer::bind(
        addr,
        Arc::new(RwLock::new(owner_view.clone())),
        "cluster.local",
        &[],
        Some(peers.path()),
    )
    .unwrap();
    let tmp = peers.path().join(".1.tmp");
    std::fs::write(&tmp, owner_view.render()).unwrap();
    std::fs::rename(&tmp, peers.path().join("1")).unwrap();
    let web = web.await.unwrap().expect("an answer");
    let api = api.await.unwrap().expect("an answer");
    assert_eq!(web.metadata.response_code, ResponseCode::NoError);
    assert_eq!(first_address(&web), Some(Ipv4Addr::new(198, 19, 9, 9)));
    assert_eq!(api.metadata.response_code, ResponseCode::NoError);
    assert_eq!(first_address(&api), Some(Ipv4Addr::new(198, 19, 9, 10)));
    drop(owner);
    drop(other);
}

#[test]
fn the_server_answers_while_the_runtime_that_started_it_is_busy() {
    // A single-threaded runtime that starts the server and then never runs again, as a
    // podrun whose runtime is busy with hundreds of pods.
    let busy = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The asking pod (127.0.0.6) is this podrun's own.
    let view = view_with("web", Ipv4Addr::new(198, 19, 0, 1));
    view.write()
        .unwrap()
        .clients
        .insert(Ipv4Addr::new(127, 0, 0, 6));
    let server = busy
        .block_on(async {
            DnsServer::start(
                "127.0.0.1:0".parse().unwrap(),
                view,
                "cluster.local",
                &[],
                None,
            )
            .await
        })
        .unwrap();
    let mut q = Message::new(9, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let sock = std::net::UdpSocket::bind("127.0.0.6:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for _ in 0..20 {
        let asked = std::time::Instant::now();
        sock.send_to(&q.to_vec().unwrap(), server.local_addr())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .expect("an answer without the busy runtime");
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(first_address(&m), Some(Ipv4Addr::new(198, 19, 0, 1)));
        assert!(
            asked.elapsed() < Duration::from_millis(200),
            "answered in {:?}",
            asked.elapsed()
        );
    }
    drop(server);
}
