use proptest::prelude::*;

use super::*;

fn request(raw: &str) -> Result<Option<RequestHead>, HeadError> {
    parse_request(raw.as_bytes(), 100, 60 * 1024)
}

fn complete(raw: &str) -> RequestHead {
    request(raw).expect("valid").expect("complete")
}

fn forwarded_request(raw: &str, id: Option<&str>) -> String {
    let head = complete(raw);
    let mut out = Vec::new();
    write_request(&mut out, raw.as_bytes(), &head, id.map(str::as_bytes));
    String::from_utf8(out).unwrap()
}

fn response(raw: &str, head_request: bool) -> ResponseHead {
    parse_response(raw.as_bytes(), 100, 96 * 1024, head_request, false)
        .expect("valid")
        .expect("complete")
}

#[test]
fn request_heads_are_complete_only_with_the_blank_line() {
    assert_eq!(request("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    let head = complete("GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\nBODY");
    assert_eq!(head.len, "GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n".len());
    assert_eq!(head.body, Framing::None);
    assert!(head.keep_alive && !head.http10 && !head.upgrade);
}

#[test]
fn request_framing_follows_rfc_9112() {
    let length = complete("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(length.body, Framing::Length(5));
    let same_twice = complete("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
    assert_eq!(same_twice.body, Framing::Length(5));
    let chunked = complete("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(chunked.body, Framing::Chunked);
    for (raw, detail) in [
        (
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "http1.content_length_and_chunked_not_allowed",
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "http1.invalid_transfer_encoding",
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "http1.invalid_transfer_encoding",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            "http1.codec_error",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "http1.codec_error",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "http1.codec_error",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "http1.codec_error",
        ),
        ("GET / HTTP/1.1\r\nHost a\r\n\r\n", "http1.codec_error"),
        ("GET / HTTP/2.0\r\n\r\n", "http1.codec_error"),
    ] {
        assert_eq!(request(raw), Err(HeadError::Invalid(detail)), "{raw:?}");
    }
}

#[test]
fn request_limits_give_too_large() {
    let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "y".repeat(2000));
    assert_eq!(
        parse_request(big.as_bytes(), 100, 1024),
        Err(HeadError::TooLarge)
    );
    // Incomplete but already over the limit.
    assert_eq!(
        parse_request(&big.as_bytes()[..1500], 100, 1024),
        Err(HeadError::TooLarge)
    );
    let many: String = (0..5).map(|i| format!("x{i}: 1\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(
        parse_request(raw.as_bytes(), 4, 1024),
        Err(HeadError::TooLarge)
    );
    assert!(parse_request(raw.as_bytes(), 5, 1024).unwrap().is_some());
    assert!(parse_request(raw.as_bytes(), 500, 1024).unwrap().is_some());
}

#[test]
fn keep_alive_depends_on_version_and_connection() {
    assert!(complete("GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!complete("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!complete("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
}

#[test]
fn logged_fields_are_found() {
    let raw = "GET http://svc:8080?q HTTP/1.1\r\nUser-Agent: curl\r\nX-Request-Id: \r\nContent-Type: application/grpc+proto\r\n\r\n";
    let head = complete(raw);
    assert_eq!(logged_path(raw.as_bytes(), &head), "/?q");
    let found = authority(raw.as_bytes(), &head).unwrap();
    assert_eq!(&raw[found], "svc:8080");
    assert_eq!(
        &raw[head.fields.list[head.user_agent.unwrap()].value.clone()],
        "curl"
    );
    assert_eq!(head.request_id, None, "an empty id counts as none");
    assert!(head.grpc);
    let connect = "CONNECT db:5432 HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = complete(connect);
    assert!(head.upgrade);
    assert_eq!(logged_path(connect.as_bytes(), &head), "db:5432");
    assert_eq!(
        &connect[authority(connect.as_bytes(), &head).unwrap()],
        "db:5432"
    );
}

#[test]
fn forwarded_request_drops_hop_by_hop_fields_and_adds_the_request_id() {
    let raw = "GET /a HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nX-End: 2\r\nX-Request-Id: \r\n\r\n";
    assert_eq!(
        forwarded_request(raw, Some("id-1")),
        "GET /a HTTP/1.1\r\nHost: svc\r\nX-End: 2\r\nx-request-id: id-1\r\n\r\n"
    );
    let grpc = "POST /s/M HTTP/1.1\r\nte: trailers\r\n\r\n";
    assert_eq!(forwarded_request(grpc, None), grpc, "TE: trailers passes");
}

#[test]
fn framing_fields_listed_in_connection_are_still_forwarded() {
    let raw =
        "POST / HTTP/1.1\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        forwarded_request(raw, None),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let raw = "POST / HTTP/1.1\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(
        forwarded_request(raw, None),
        "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n"
    );
}

#[test]
fn forwarded_request_keeps_a_client_request_id_and_field_bytes() {
    let raw = "POST /p HTTP/1.1\r\nhOsT: svc\r\nX-Request-Id: abc\r\nx-multi: a\r\nx-multi: b\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(
        forwarded_request(raw, None),
        "POST /p HTTP/1.1\r\nhOsT: svc\r\nX-Request-Id: abc\r\nx-multi: a\r\nx-multi: b\r\nContent-Length: 3\r\n\r\n"
    );
}

#[test]
fn forwarded_request_is_origin_form_with_expect_answered() {
    let raw = "PUT http://svc:81 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert_eq!(
        forwarded_request(raw, None),
        "PUT / HTTP/1.1\r\nContent-Length: 1\r\nhost: svc:81\r\n\r\n"
    );
}

#[test]
fn forwarded_upgrade_keeps_upgrade() {
    let raw = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(
        forwarded_request(raw, None),
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
    );
}

#[test]
fn response_framing_follows_rfc_9112() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            false,
            Framing::Length(3),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            true,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            false,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            Framing::None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
            Framing::UntilClose,
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
            Framing::Length(1),
            true,
        ),
    ];
    for (raw, head_request, framing, reusable) in cases {
        let head = response(raw, head_request);
        assert_eq!((head.body, head.reusable), (framing, reusable), "{raw:?}");
    }
    assert_eq!(
        parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            100,
            1024,
            false,
            false
        ),
        Err(CODEC_ERROR)
    );
    for bad in [&b"HTTP/1.1 2000 OK\r\n\r\n"[..], b"HTTP/1.1 000 OK\r\n\r\n"] {
        assert_eq!(
            parse_response(bad, 100, 1024, false, false),
            Err(CODEC_ERROR)
        );
    }
    let tunnel = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 100, 1024, false, true);
    assert_eq!(tunnel.unwrap().unwrap().body, Framing::None);
}

#[test]
fn a_reason_phrase_that_is_not_utf8_is_dropped() {
    let raw = b"HTTP/1.1 200 caf\xe9\r\nContent-Length: 1\r\n\r\n";
    let head = parse_response(raw, 100, 1024, false, false)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    write_response(&mut out, raw, &head, 1, Persist::Default, false);
    assert!(
        out.starts_with(b"HTTP/1.1 200 \r\nContent-Length: 1\r\n"),
        "{out:?}"
    );
}

#[test]
fn forwarded_response_gets_service_time_and_connection() {
    let raw = "HTTP/1.1 200 Fine\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 2\r\n\r\n";
    let head = response(raw, false);
    let mut out = Vec::new();
    write_response(&mut out, raw.as_bytes(), &head, 7, Persist::Close, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 Fine\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 2\r\nx-envoy-upstream-service-time: 7\r\nconnection: close\r\n\r\n"
    );
    let raw = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
    let head = response(raw, false);
    let mut out = Vec::new();
    write_response(&mut out, raw.as_bytes(), &head, 0, Persist::Default, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-envoy-upstream-service-time: 0\r\n\r\n",
        "a length next to chunked is dropped"
    );
    let mut out = Vec::new();
    write_response(&mut out, raw.as_bytes(), &head, 0, Persist::Close, true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 0\r\nconnection: close\r\n\r\n",
        "a decoded body has neither"
    );
}

#[test]
fn local_replies_are_complete_messages() {
    let mut out = Vec::new();
    write_local(&mut out, 503, b"no", Persist::Close);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nno"
    );
}

fn decode_all(c: &mut Chunked, input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut data = Vec::new();
    let fed = c.feed_with(input, |d| data.extend_from_slice(d))?;
    Ok((data, fed.used))
}

#[test]
fn chunked_bodies_end_after_the_last_chunk_and_trailers() {
    let body = b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    let mut c = Chunked::new();
    let (data, used) = decode_all(&mut c, body).unwrap();
    assert_eq!(data, b"hello world");
    assert_eq!(used, body.len() - 4);
    assert!(c.is_done());
    let mut c = Chunked::new();
    assert_eq!(
        c.feed(b"0\r\n\r\n"),
        Ok(Fed {
            used: 5,
            payload: 0,
            done: true
        })
    );
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for bad in [
        &b"x\r\n"[..],
        b"5\r\nhelloXX",
        b"5\nhello\r\n",
        b"0\r\nx\n",
        b"fffffffffffffffff\r\n",
    ] {
        assert_eq!(
            Chunked::new().feed(bad).map(|f| f.done),
            Err(ChunkError),
            "{bad:?}"
        );
    }
    let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_META));
    assert_eq!(
        Chunked::new().feed(long_ext.as_bytes()).map(|_| ()),
        Err(ChunkError)
    );
}

proptest! {
    /// However a chunked body is split across reads, the decoder sees the same payload
    /// and stops at the same byte.
    #[test]
    fn chunked_decoding_does_not_depend_on_read_boundaries(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let mut wire = Vec::new();
        for c in &chunks {
            wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let end = wire.len();
        wire.extend_from_slice(b"GET /next");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % wire.len()).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut c = Chunked::new();
        let mut data = Vec::new();
        let mut at = 0;
        let mut payload = 0;
        for cut in cuts {
            if cut <= at || c.is_done() {
                continue;
            }
            let fed = c.feed_with(&wire[at..cut], |d| data.extend_from_slice(d)).unwrap();
            at += fed.used;
            payload += fed.payload;
        }
        prop_assert!(c.is_done());
        prop_assert_eq!(at, end);
        prop_assert_eq!(data, chunks.concat());
        prop_assert_eq!(payload as usize, chunks.iter().map(Vec::len).sum::<usize>());
    }

    /// No input makes the parsers panic.
    #[test]
    fn parsers_take_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_request(&input, 100, 1024);
        let _ = parse_response(&input, 100, 1024, false, false);
        let _ = Chunked::new().feed(&input);
    }
}
