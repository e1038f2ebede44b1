//! Kubernetes resource quantities (`resource.Quantity`): `500m`, `1.5Gi`, `129e6`.
//!
//! [`Quantity::parse`] follows the API machinery's `ParseQuantity`: an optional sign, a
//! decimal number (`1`, `1.5`, `.5`, `1.`), then a suffix — a decimal SI one (`n u m k M
//! G T P E`), a binary SI one (`Ki Mi Gi Ti Pi Ei`) or an exponent (`e3`, `E-2`). The
//! value is held exactly as an integer count of nano-units; a finer fraction rounds up to
//! the next nano-unit and a larger magnitude is capped at 2⁶³−1 units, both as upstream
//! does. The [`Display`](fmt::Display) form is the canonical one the API server writes
//! back (`1000m` → `1`, `1024Mi` → `1Gi`, `0.5Gi` → `512Mi`), and
//! [`Quantity::value`] / [`Quantity::milli_value`] round up to whole units or milli-units
//! the way the kubelet reads a memory limit in bytes or a cpu limit in millicores.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// How a quantity was written, which is how its canonical form is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `12e6`, `3E-3`: a power of ten written out.
    DecimalExponent,
    /// `5Gi`, `128Mi`: powers of 1024.
    BinarySi,
    /// `5G`, `500m`, `3`: powers of 1000.
    DecimalSi,
}

/// Why a text is not a quantity; the messages are upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not have the shape of a quantity (`ErrFormatWrong`).
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    /// The number in front of the suffix has no digits (`ErrNumeric`).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// The suffix is not a known one (`ErrSuffix`).
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

impl QuantityError {
    /// The message, as a static string (what the decoder reports).
    pub fn message(self) -> &'static str {
        match self {
            QuantityError::FormatWrong => {
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            }
            QuantityError::Numeric => "unable to parse numeric part of quantity",
            QuantityError::Suffix => "unable to parse quantity's suffix",
        }
    }
}

/// A parsed quantity. Equality and order compare values, not spellings: `1Ki == 1024`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Upstream's cap on a quantity's magnitude: `math.MaxInt64` units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;
/// Decimal digits of [`MAX_NANOS`]; a longer integer is above the cap.
const MAX_NANOS_DIGITS: usize = 28;

/// The pieces of a quantity's text (upstream `parseQuantityString`).
struct Parts<'a> {
    negative: bool,
    /// Digits before the point, leading zeros stripped.
    int: &'a str,
    /// Digits after the point.
    frac: &'a str,
    /// Whether the number had any digit at all (`.` and `+` have none).
    has_digits: bool,
    suffix: &'a str,
}

/// What a suffix multiplies by.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// `10^n`.
    Ten(i32),
    /// `2^n`, `n` a multiple of 10 up to 60.
    Two(u32),
}

impl Quantity {
    /// Parses `text` exactly as `resource.ParseQuantity` does (no surrounding white space;
    /// JSON decoding trims it first).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let parts = split(text)?;
        let (scale, format) = interpret(parts.suffix).ok_or(QuantityError::Suffix)?;
        if !parts.has_digits && needs_digits(scale) {
            return Err(QuantityError::Numeric);
        }
        let magnitude = magnitude_nanos(parts.int, parts.frac, scale);
        Ok(Quantity {
            nanos: if parts.negative {
                -magnitude
            } else {
                magnitude
            },
            format,
        })
    }

    /// How the quantity was written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Is the value zero?
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Is the value below zero?
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in units of `10^scale`, rounded away from zero (upstream `ScaledValue`);
    /// `None` if it does not fit an `i64`.
    pub fn scaled_value(&self, scale: i32) -> Option<i64> {
        let shift = scale.checked_add(9)?;
        let magnitude = self.nanos.unsigned_abs();
        let scaled = if shift >= 0 {
            match 10u128.checked_pow(shift.unsigned_abs()) {
                Some(div) => magnitude.div_ceil(div),
                // A divisor beyond u128 exceeds every magnitude: anything non-zero is one.
                None => u128::from(magnitude > 0),
            }
        } else {
            magnitude.checked_mul(10u128.checked_pow(shift.unsigned_abs())?)?
        };
        let scaled = i64::try_from(scaled).ok()?;
        Some(if self.nanos < 0 { -scaled } else { scaled })
    }

    /// The value in whole units (bytes for memory), rounded away from zero.
    pub fn value(&self) -> Option<i64> {
        self.scaled_value(0)
    }

    /// The value in milli-units (millicores for cpu), rounded away from zero.
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled_value(-3)
    }

    /// The canonical string, as `kubectl get -o yaml` shows it.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

/// Splits `text` into sign, number and suffix, refusing what does not have a quantity's
/// shape. Like upstream, `1.` and `.5` are numbers, and a text that ends inside the
/// number (`+`, `.`) is one with no digits.
fn split(text: &str) -> Result<Parts<'_>, QuantityError> {
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let unpadded = rest.trim_start_matches('0');
    let stripped_zero = unpadded.len() < rest.len();
    let int_end = unpadded
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unpadded.len());
    let int = &unpadded[..int_end];
    let mut rest = &unpadded[int_end..];
    let mut frac = "";
    if let Some(after_point) = rest.strip_prefix('.') {
        let frac_end = after_point
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_point.len());
        frac = &after_point[..frac_end];
        rest = &after_point[frac_end..];
    }
    let has_digits = stripped_zero || !int.is_empty() || !frac.is_empty();
    // `[eEinumkKMGTP]*[-+]?[0-9]*` and nothing after it.
    let letters_end = rest
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(rest.len());
    let tail = &rest[letters_end..];
    let tail = tail.strip_prefix(['-', '+']).unwrap_or(tail);
    if !tail.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        negative,
        int,
        frac,
        has_digits,
        suffix: rest,
    })
}

/// What `suffix` multiplies by and the format it implies (upstream `suffixHandler.interpret`).
fn interpret(suffix: &str) -> Option<(Scale, Format)> {
    let decimal = |e| Some((Scale::Ten(e), Format::DecimalSi));
    let binary = |e| Some((Scale::Two(e), Format::BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let digits = suffix.strip_prefix(['e', 'E'])?;
            // Upstream parses 64 bits and keeps the low 32.
            let exponent = digits.parse::<i64>().ok()? as i32;
            Some((Scale::Ten(exponent), Format::DecimalExponent))
        }
    }
}

/// Whether a number without digits (`.`, `+`) reaches upstream's arbitrary-precision
/// path, which cannot read it: only a decimal scale finer than a nano-unit does; every
/// other one reads it as zero.
fn needs_digits(scale: Scale) -> bool {
    matches!(scale, Scale::Ten(e) if e < -9)
}

/// `|int.frac × scale|` in nano-units, rounded up to a whole nano-unit and capped at
/// [`MAX_NANOS`].
fn magnitude_nanos(int: &str, frac: &str, scale: Scale) -> i128 {
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let mut exp10 = 9 - frac.len() as i64;
    match scale {
        Scale::Ten(e) => exp10 += i64::from(e),
        Scale::Two(e) => digits = multiply(&digits, 1u64 << e),
    }
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    let mut digits = &digits[first..];
    if digits.is_empty() {
        return 0;
    }
    let mut round_up = false;
    if exp10 < 0 {
        let cut = usize::try_from(-exp10).unwrap_or(usize::MAX);
        if cut >= digits.len() {
            return 1;
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        round_up = dropped.iter().any(|&d| d != 0);
        digits = kept;
        exp10 = 0;
    }
    if digits.len() as i64 + exp10 > MAX_NANOS_DIGITS as i64 {
        return MAX_NANOS;
    }
    let mut nanos = digits.iter().fold(0i128, |n, &d| n * 10 + i128::from(d));
    nanos *= 10i128.pow(exp10 as u32);
    (nanos + i128::from(round_up)).min(MAX_NANOS)
}

/// `digits × factor`, decimal digits most significant first.
fn multiply(digits: &[u8], factor: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry: u128 = 0;
    for &d in digits.iter().rev() {
        let v = u128::from(d) * u128::from(factor) + carry;
        out.push((v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.nanos;
        if v == 0 {
            return f.write_str("0");
        }
        let whole = v % NANOS_PER_UNIT == 0;
        // Binary SI only for whole values of at least 1024; anything else would round.
        if self.format == Format::BinarySi && whole && v.abs() >= 1024 * NANOS_PER_UNIT {
            let mut units = v / NANOS_PER_UNIT;
            let mut power = 0;
            while units % 1024 == 0 {
                units /= 1024;
                power += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
            return write!(f, "{units}{suffix}");
        }
        // The largest power of 1000 (from nano) that divides the value exactly.
        let mut mantissa = v;
        let mut exponent = -9;
        while exponent < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exponent += 3;
        }
        match self.format {
            Format::DecimalExponent if exponent != 0 => write!(f, "{mantissa}e{exponent}"),
            Format::DecimalExponent => write!(f, "{mantissa}"),
            _ => {
                let suffix = match exponent {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                write!(f, "{mantissa}{suffix}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
