use super::*;
use proptest::prelude::*;

fn canon(s: &str) -> String {
    Quantity::parse(s).expect(s).canonical()
}

#[test]
fn canonical_forms_match_the_api_server() {
    for (input, want) in [
        ("1000m", "1"),
        ("2000m", "2"),
        ("100m", "100m"),
        ("1024Mi", "1Gi"),
        ("128Mi", "128Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("0.5Ki", "512"),
        ("1025Ki", "1025Ki"),
        ("1.5Ki", "1536"),
        ("1.1Ki", "1126400m"),
        ("0.5", "500m"),
        ("1500k", "1500k"),
        ("1000k", "1M"),
        ("512", "512"),
        ("0", "0"),
        ("-0", "0"),
        ("00", "0"),
        ("1e3", "1e3"),
        ("12e2", "1200"),
        ("1E-3", "1e-3"),
        ("1e+3", "1e3"),
        ("0.1m", "100u"),
        ("1n", "1n"),
        ("0.1n", "1n"),
        ("-0.1n", "-1n"),
        ("1.", "1"),
        (".5", "500m"),
        ("+5", "5"),
        ("-5Mi", "-5Mi"),
        ("1E", "1E"),
        ("10E", "9223372036854775807"),
        ("1e99", "9223372036854775807"),
        ("99999999999999999999999Ei", "9223372036854775807"),
        ("1e-99", "1e-9"),
    ] {
        assert_eq!(canon(input), want, "{input}");
    }
}

#[test]
fn upstream_accepts_a_number_without_digits_as_zero() {
    for text in [".", "+", "-", "+.", ".Ki", ".m", "Mi", "k"] {
        assert_eq!(
            Quantity::parse(text).map(|q| q.is_zero()),
            Ok(true),
            "{text}"
        );
    }
    assert_eq!(Quantity::parse(".e-10"), Err(QuantityError::Numeric));
}

#[test]
fn errors_carry_upstreams_messages() {
    use QuantityError::*;
    for (text, want) in [
        ("", FormatWrong),
        ("abc", FormatWrong),
        ("1.2.3", FormatWrong),
        ("--1", Suffix),
        ("1 ", FormatWrong),
        (" 1", FormatWrong),
        ("1\n", FormatWrong),
        ("1Mi ", FormatWrong),
        ("1x", FormatWrong),
        ("1e", Suffix),
        ("5Xi", FormatWrong),
        ("1Mi3", Suffix),
        ("1ki", Suffix),
        ("1K", Suffix),
        ("1e99999999999999999999", Suffix),
    ] {
        assert_eq!(Quantity::parse(text), Err(want), "{text:?}");
    }
    assert_eq!(
        QuantityError::Suffix.to_string(),
        QuantityError::Suffix.message()
    );
    assert_eq!(
        QuantityError::FormatWrong.to_string(),
        QuantityError::FormatWrong.message()
    );
}

#[test]
fn value_and_milli_value_round_up() {
    let q = |s: &str| Quantity::parse(s).expect(s);
    for (text, bytes) in [
        ("50Mi", 50 << 20),
        ("1Gi", 1 << 30),
        ("128974848", 128_974_848),
        ("129e6", 129_000_000),
        ("129M", 129_000_000),
        ("1.5Ki", 1536),
        ("0.5", 1),
        ("100m", 1),
        ("0", 0),
        ("-1.5", -2),
    ] {
        assert_eq!(q(text).value(), Some(bytes), "{text}");
    }
    for (text, millis) in [
        ("250m", 250),
        ("0.5", 500),
        ("2", 2000),
        ("1.0001", 1001),
        ("100u", 1),
    ] {
        assert_eq!(q(text).milli_value(), Some(millis), "{text}");
    }
    assert_eq!(q("8E").milli_value(), None);
    assert_eq!(q("1e99").value(), Some(i64::MAX));
}

#[test]
fn comparison_is_by_value() {
    let q = |s: &str| Quantity::parse(s).expect(s);
    assert_eq!(q("1Ki"), q("1024"));
    assert_eq!(q("1"), q("1000m"));
    assert!(q("1Gi") > q("1G"));
    assert!(q("-1") < q("0"));
    assert!(q("-1").is_negative());
}

/// A quantity's text: sign, number and suffix as a person might write them.
fn quantity_text() -> impl Strategy<Value = String> {
    let sign = prop::sample::select(vec!["", "+", "-"]);
    let int = "[0-9]{0,12}";
    let frac = prop::option::of("[0-9]{0,12}");
    let suffix = prop_oneof![
        prop::sample::select(vec![
            "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ])
        .prop_map(str::to_owned),
        (prop::sample::select(vec!["e", "E"]), -30i32..30).prop_map(|(e, n)| format!("{e}{n}")),
    ];
    (sign, int, frac, suffix).prop_map(|(sign, int, frac, suffix)| match frac {
        Some(frac) => format!("{sign}{int}.{frac}{suffix}"),
        None => format!("{sign}{int}{suffix}"),
    })
}

proptest! {
    #[test]
    fn canonical_form_parses_back_to_the_same_value(text in quantity_text()) {
        let Ok(q) = Quantity::parse(&text) else { return Ok(()) };
        let canonical = q.canonical();
        let again = Quantity::parse(&canonical).expect("canonical form parses");
        prop_assert_eq!(again, q, "{} -> {}", text, canonical);
        prop_assert_eq!(again.canonical(), canonical);
    }

    #[test]
    fn parsed_value_matches_exact_arithmetic(
        negative in any::<bool>(),
        units in 0u32..1_000_000,
        frac_digits in 0usize..4,
        suffix in prop::sample::select(vec![
            ("m", 1_000_000i128), ("", 1_000_000_000), ("k", 1_000_000_000_000),
            ("Ki", 1024 * 1_000_000_000), ("Mi", 1024 * 1024 * 1_000_000_000),
        ]),
    ) {
        let digits = units.to_string();
        let split = digits.len().saturating_sub(frac_digits);
        let text = format!(
            "{}{}.{}{}",
            if negative { "-" } else { "" },
            &digits[..split],
            &digits[split..],
            suffix.0
        );
        let q = Quantity::parse(&text).expect(&text);
        let den = 10i128.pow((digits.len() - split) as u32);
        // Upstream rounds a sub-nano remainder up, away from zero.
        let magnitude = (i128::from(units) * suffix.1 + den - 1) / den;
        let want = if negative { -magnitude } else { magnitude };
        prop_assert_eq!(q.nanos, want, "{}", text);
    }

    #[test]
    fn milli_value_is_never_below_the_value(text in quantity_text()) {
        let Ok(q) = Quantity::parse(&text) else { return Ok(()) };
        if let (Some(units), Some(millis)) = (q.value(), q.milli_value()) {
            let (units, millis) = (u128::from(units.unsigned_abs()), u128::from(millis.unsigned_abs()));
            prop_assert!(millis <= units * 1000);
            prop_assert!(millis * 1_000_000 >= q.nanos.unsigned_abs());
        }
    }

    #[test]
    fn no_text_panics(text in "\\PC{0,40}") {
        let _ = Quantity::parse(&text).map(|q| (q.canonical(), q.value(), q.milli_value()));
    }
}
