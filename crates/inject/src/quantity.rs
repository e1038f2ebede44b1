//! Kubernetes resource quantities: parsing and the canonical string form the API server
//! writes back (`1000m` → `1`, `1024Mi` → `1Gi`, `2000m` → `2`).
//!
//! Values are held exactly as an integer count of nano-units, which covers every suffix from
//! `n` to `E`/`Ei` without floating point; finer fractions round up, as Kubernetes does.

use std::fmt;

/// How the canonical form is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// The text is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantity {0:?} must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError(pub String);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses `text` (e.g. `100m`, `1.5Gi`, `2e3`).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(text.to_owned());
        if text.chars().any(char::is_control) {
            return Err(err());
        }
        let s = text.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(err());
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let (format, mul_num, mul_den, exp10): (Format, i128, i128, i32) = match suffix {
            "" => (Format::DecimalSi, 1, 1, 0),
            "n" => (Format::DecimalSi, 1, 1, -9),
            "u" => (Format::DecimalSi, 1, 1, -6),
            "m" => (Format::DecimalSi, 1, 1, -3),
            "k" => (Format::DecimalSi, 1, 1, 3),
            "M" => (Format::DecimalSi, 1, 1, 6),
            "G" => (Format::DecimalSi, 1, 1, 9),
            "T" => (Format::DecimalSi, 1, 1, 12),
            "P" => (Format::DecimalSi, 1, 1, 15),
            "E" => (Format::DecimalSi, 1, 1, 18),
            "Ki" => (Format::BinarySi, 1 << 10, 1, 0),
            "Mi" => (Format::BinarySi, 1 << 20, 1, 0),
            "Gi" => (Format::BinarySi, 1 << 30, 1, 0),
            "Ti" => (Format::BinarySi, 1 << 40, 1, 0),
            "Pi" => (Format::BinarySi, 1 << 50, 1, 0),
            "Ei" => (Format::BinarySi, 1 << 60, 1, 0),
            other => {
                let rest = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or_else(err)?;
                let exp: i32 = rest.parse().map_err(|_| err())?;
                if !(-18..=18).contains(&exp) {
                    return Err(err());
                }
                (Format::DecimalExponent, 1, 1, exp)
            }
        };
        // digits = int_part ++ frac_part, scaled by 10^(exp10 - frac_len + 9) nano-units.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(err());
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err())?
        };
        let scale = exp10 - frac_part.len() as i32 + 9;
        let mut nanos = mantissa.checked_mul(mul_num).ok_or_else(err)? / mul_den;
        if scale >= 0 {
            let factor = 10i128.checked_pow(scale as u32).ok_or_else(err)?;
            nanos = nanos.checked_mul(factor).ok_or_else(err)?;
        } else {
            let factor = 10i128.checked_pow((-scale) as u32).ok_or_else(err)?;
            // Sub-nano precision rounds up, like the API server.
            nanos = (nanos + factor - 1) / factor;
        }
        if nanos > 9_223_372_036_854_775_807 * NANO {
            return Err(err());
        }
        Ok(Self {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// The canonical string, as `kubectl get -o yaml` would show it.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.nanos;
        if v == 0 {
            return f.write_str("0");
        }
        let whole = v % NANO == 0;
        if self.format == Format::BinarySi && whole && v.abs() >= 1024 * NANO {
            let units = v / NANO;
            for (k, suffix) in [
                (6, "Ei"),
                (5, "Pi"),
                (4, "Ti"),
                (3, "Gi"),
                (2, "Mi"),
                (1, "Ki"),
            ] {
                let div = 1i128 << (10 * k);
                if units % div == 0 {
                    return write!(f, "{}{suffix}", units / div);
                }
            }
            return write!(f, "{units}");
        }
        let steps: [(i32, &str); 10] = [
            (18, "E"),
            (15, "P"),
            (12, "T"),
            (9, "G"),
            (6, "M"),
            (3, "k"),
            (0, ""),
            (-3, "m"),
            (-6, "u"),
            (-9, "n"),
        ];
        for (exp, suffix) in steps {
            let div = 10i128.pow((exp + 9) as u32);
            if v % div == 0 {
                let m = v / div;
                return match self.format {
                    Format::DecimalExponent if exp != 0 => write!(f, "{m}e{exp}"),
                    Format::DecimalExponent => write!(f, "{m}"),
                    _ => write!(f, "{m}{suffix}"),
                };
            }
        }
        // Unreachable in practice: `n` (10^0 nano-units) divides every value.
        write!(f, "{v}n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).expect(s).canonical()
    }

    #[test]
    fn canonical_forms_match_the_api_server() {
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("2000m"), "2");
        assert_eq!(canon("4000m"), "4");
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("128Mi"), "128Mi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1500k"), "1500k");
        assert_eq!(canon("1000k"), "1M");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("0.1m"), "100u");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "abc", "1x", "1.2.3", "--1", "1\n", "Mi", "1e99"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
