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
    fn memory_is_bytes_and_cpu_millicores_rounded_up() {
        assert_eq!(bytes(" 1.5Ki "), Ok(1536));
        assert_eq!(bytes("100m"), Ok(1));
        assert_eq!(millicores("1.0001"), Ok(1001));
        assert_eq!(millicores("100u"), Ok(1));
        // Upstream caps a quantity at 2^63-1 units.
        assert_eq!(bytes("1e99"), Ok(i64::MAX as u64));
    }

    #[test]
    fn bad_negative_and_oversized_quantities_are_errors() {
        assert_eq!(
            bytes("5ki"),
            Err("unable to parse quantity's suffix: \"5ki\"".to_owned())
        );
        assert_eq!(bytes("-1"), Err("negative quantity \"-1\"".to_owned()));
        assert_eq!(
            millicores("8E"),
            Err("quantity \"8E\" is too large".to_owned())
        );
        for q in ["", "abc", "1.2.3", "1e"] {
            assert!(millicores(q).is_err(), "{q}");
        }
    }
}
