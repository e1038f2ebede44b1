//! Fuzzes protocol detection on a connection's first bytes: `route::sniff` and
//! `route::parse_sni` never panic, both are stable once decided (appending bytes never
//! changes a verdict), and a found server name is a well-formed host-like string that
//! really occurs in the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podrun_proxy::route::{Sni, Sniffed, parse_sni, sniff};

fuzz_target!(|data: &[u8]| {
    check_sniff(data);
    check_sni(data);
});

/// Every prefix of the input is classified, and once one prefix is decided every
/// longer prefix gets the same verdict. `sniff` only looks at a bounded head, so this
/// walk is linear in the input.
fn check_sniff(data: &[u8]) {
    let mut decided: Option<(usize, Sniffed)> = None;
    for end in 0..=data.len() {
        let got = sniff(&data[..end]);
        match decided {
            Some((at, first)) => assert_eq!(
                got, first,
                "sniff changed its verdict: {first:?} at {at} bytes, {got:?} at {end}"
            ),
            None if got != Sniffed::NeedMore => decided = Some((end, got)),
            None => {}
        }
    }
    if data.is_empty() {
        assert_eq!(decided, None, "an empty buffer is never decided");
    }
}

/// `parse_sni` needs exactly the first TLS record: it answers `NeedMore` before the
/// record is complete and the same verdict for every buffer that holds it.
fn check_sni(data: &[u8]) {
    let full = parse_sni(data);
    if let Sni::Found(name) = &full {
        assert!(!name.is_empty(), "empty server name");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "server name is not lowercase printable ASCII: {name:?}"
        );
        let lower: Vec<u8> = data.iter().map(u8::to_ascii_lowercase).collect();
        assert!(
            lower.windows(name.len()).any(|w| w == name.as_bytes()),
            "server name {name:?} does not occur in the input"
        );
    }
    if data.len() < 5 {
        assert_eq!(full, Sni::NeedMore);
        return;
    }
    let record_end = 5 + usize::from(u16::from_be_bytes([data[3], data[4]]));
    if data[0] != 0x16 {
        assert_eq!(full, Sni::Invalid);
    } else if data.len() < record_end {
        assert_eq!(full, Sni::NeedMore);
    } else {
        assert_ne!(full, Sni::NeedMore, "a complete record is always decided");
        assert_eq!(parse_sni(&data[..record_end - 1]), Sni::NeedMore);
        assert_eq!(parse_sni(&data[..record_end]), full);
    }
}
