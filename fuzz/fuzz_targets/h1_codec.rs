//! Fuzzes the HTTP/1.1 codec of the proxy (`h1::codec`), which decides where every
//! message and body ends:
//!
//! - a request or response head parses the same whether more bytes follow or not, and
//!   no shorter prefix of it is complete;
//! - the head the proxy writes for the other side parses again, with the same method,
//!   status and body framing: rewriting a head can never change where its body ends
//!   (the root of request smuggling);
//! - a chunked body gives the same payload and end however its bytes are split.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podrun_proxy::h1::codec::{
    Chunked, Persist, parse_request, parse_response, write_request, write_response,
};

const MAX_FIELDS: usize = 32;
const MAX_LEN: usize = 8 * 1024;

fuzz_target!(|data: &[u8]| {
    check_request(data);
    check_response(data);
    check_chunked(data);
});

fn check_request(data: &[u8]) {
    let Ok(Some(head)) = parse_request(data, MAX_FIELDS, MAX_LEN) else {
        return;
    };
    assert!(head.len <= data.len());
    let exact = parse_request(&data[..head.len], MAX_FIELDS, MAX_LEN);
    assert_eq!(exact.as_ref().ok().and_then(Option::as_ref), Some(&head));
    for end in 0..head.len {
        assert_eq!(
            parse_request(&data[..end], MAX_FIELDS, MAX_LEN),
            Ok(None),
            "a {end}-byte prefix of a {}-byte head is complete",
            head.len
        );
    }
    let mut out = Vec::new();
    write_request(
        &mut out,
        data,
        &head,
        Some(b"00000000-0000-4000-8000-000000000000"),
    );
    let again = match parse_request(&out, MAX_FIELDS + 8, MAX_LEN * 2) {
        Ok(Some(again)) => again,
        other => panic!("forwarded head does not parse: {other:?} {out:?}"),
    };
    assert_eq!(again.len, out.len());
    assert_eq!(&out[again.method.clone()], &data[head.method.clone()]);
    assert_eq!(again.body, head.body, "framing changed: {out:?}");
    assert_eq!(again.http10, head.http10);
}

fn check_response(data: &[u8]) {
    for (head_request, connect) in [(false, false), (true, false), (false, true)] {
        let Ok(Some(head)) = parse_response(data, MAX_FIELDS, MAX_LEN, head_request, connect)
        else {
            continue;
        };
        assert!(head.len <= data.len());
        for persist in [Persist::Default, Persist::Close] {
            let mut out = Vec::new();
            write_response(&mut out, data, &head, 3, persist, false);
            let again =
                match parse_response(&out, MAX_FIELDS + 8, MAX_LEN * 2, head_request, connect) {
                    Ok(Some(again)) => again,
                    other => panic!("forwarded head does not parse: {other:?} {out:?}"),
                };
            assert_eq!(again.len, out.len());
            assert_eq!(again.status, head.status);
            assert_eq!(again.body, head.body, "framing changed: {out:?}");
        }
    }
}

fn check_chunked(data: &[u8]) {
    let mut whole = Chunked::new();
    let mut payload = Vec::new();
    let one = whole.feed_with(data, |d| payload.extend_from_slice(d));
    let Ok(one) = one else { return };
    assert!(one.used <= data.len());
    assert_eq!(one.payload as usize, payload.len());
    // Split at a point derived from the input and feed both parts.
    let cut = data.first().map_or(0, |b| usize::from(*b)) % (data.len() + 1);
    let mut split = Chunked::new();
    let mut again = Vec::new();
    let first = split
        .feed_with(&data[..cut], |d| again.extend_from_slice(d))
        .expect("a prefix of a valid body is valid");
    let mut used = first.used;
    if !first.done {
        let second = split
            .feed_with(&data[cut..], |d| again.extend_from_slice(d))
            .expect("the rest of a valid body is valid");
        used += second.used;
    }
    assert_eq!(used, one.used);
    assert_eq!(again, payload);
    assert_eq!(split.is_done(), one.done);
}
