//! Resource quantities as the kubelet writes them into cgroup files: memory in bytes,
//! cpu in millicores, both rounded up (`Quantity.Value()` / `MilliValue()`) so a limit is
//! never below what was asked for. Parsing is the API's own ([`podrun_model::quantity`]).

use podrun_model::quantity::Quantity;

/// `ceil(q × 10^-scale)` for a non-negative quantity, as an integer.
fn scaled(s: &str, scale: i32) -> Result<u64, String> {
    let q = Quantity::parse(s.trim()).map_err(|e| format!("{e}: {s:?}"))?;
    if q.is_negative() {
        return Err(format!("negative quantity {s:?}"));
    }
    q.scaled_value(scale)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("quantity {s:?} is too large"))
}

/// A memory quantity in bytes, rounded up.
pub fn bytes(s: &str) -> Result<u64, String> {
    scaled(s, 0)
}

/// A cpu quantity in millicores, rounded up.
pub fn millicores(s: &str) -> Result<u64, String> {
    scaled(s, -3)
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
            // Upstream caps a quantity at 2^63-1 units.
            ("1e99", i64::MAX as u64),
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
        for q in ["", "abc", "1.2.3", "-1", "5Xi", "1e", "8E"] {
            assert!(millicores(q).is_err(), "{q}");
        }
        assert_eq!(bytes("-1"), Err("negative quantity \"-1\"".to_owned()));
    }
}
