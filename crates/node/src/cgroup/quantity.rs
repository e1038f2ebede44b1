//! Kubernetes resource quantities (`128Mi`, `0.5`, `250m`, `1e3`) as integers.
//!
//! Exact integer arithmetic, rounding up as `Quantity.Value()` / `MilliValue()` do, so a
//! limit is never rounded below what was asked for.

/// A parsed quantity: `mantissa × 10^exp10 × 1024^exp1024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: u128,
    exp10: i32,
    exp1024: u32,
}

fn parse(s: &str) -> Result<Parsed, String> {
    let bad = || {
        format!(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}"
        )
    };
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative quantity {s:?}"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(format!("quantity {s:?} is too large"));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let mut exp10 = -(frac.len() as i32);
    let mut exp1024 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp1024 = 1,
        "Mi" => exp1024 = 2,
        "Gi" => exp1024 = 3,
        "Ti" => exp1024 = 4,
        "Pi" => exp1024 = 5,
        "Ei" => exp1024 = 6,
        other => {
            let e = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(bad)?;
            let e: i32 = e.parse().map_err(|_| bad())?;
            if !(-40..=40).contains(&e) {
                return Err(format!("quantity {s:?} is out of range"));
            }
            exp10 += e;
        }
    }
    Ok(Parsed {
        mantissa,
        exp10,
        exp1024,
    })
}

/// `ceil(q × 10^scale)` as an integer.
fn scaled(s: &str, scale: i32) -> Result<u64, String> {
    let p = parse(s)?;
    let too_big = || format!("quantity {s:?} is too large");
    let mut v = p.mantissa;
    for _ in 0..p.exp1024 {
        v = v.checked_mul(1024).ok_or_else(too_big)?;
    }
    let e = p.exp10 + scale;
    if e >= 0 {
        for _ in 0..e {
            v = v.checked_mul(10).ok_or_else(too_big)?;
        }
    } else {
        let div = 10u128.checked_pow((-e) as u32).ok_or_else(too_big);
        v = match div {
            Ok(d) => v.div_ceil(d),
            // 10^-e exceeds any mantissa: a tiny positive value rounds up to 1.
            Err(_) => u128::from(v > 0),
        };
    }
    u64::try_from(v).map_err(|_| too_big())
}

/// A memory quantity in bytes, rounded up.
pub fn bytes(s: &str) -> Result<u64, String> {
    scaled(s, 0)
}

/// A cpu quantity in millicores, rounded up.
pub fn millicores(s: &str) -> Result<u64, String> {
    scaled(s, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        for (q, want) in [
            ("50Mi", 50 * 1024 * 1024),
            ("1Gi", 1 << 30),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("1.5Ki", 1536),
            ("0.5", 1),
            ("100m", 1),
            ("0", 0),
        ] {
            assert_eq!(bytes(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn cpu_quantities() {
        for (q, want) in [
            ("250m", 250),
            ("0.5", 500),
            ("2", 2000),
            ("1.0001", 1001),
            ("100u", 1),
        ] {
            assert_eq!(millicores(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn bad_quantities_are_errors() {
        for q in [
            "",
            "abc",
            "1.2.3",
            "-1",
            "5Xi",
            "1e99",
            "99999999999999999999999Ei",
        ] {
            assert!(bytes(q).is_err(), "{q}");
        }
    }
}
