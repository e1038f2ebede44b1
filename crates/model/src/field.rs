//! Field errors with the API server's wording.
//!
//! Mirrors apimachinery's `field.Error` / `field.ErrorList` and the way
//! `apierrors.NewInvalid` turns a list into the 422 message, so that what
//! `podrun` prints is byte-for-byte what a real cluster prints.

use std::fmt;

// === ErrorKind ===

/// The type of a field error (upstream `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required value is missing (`Required value`).
    Required,
    /// The field may not be set in this context (`Forbidden`).
    Forbidden,
    /// The value is malformed or out of range (`Invalid value`).
    Invalid,
    /// The value is not one of an enumerated set (`Unsupported value`).
    NotSupported,
    /// The value duplicates another one that must be unique (`Duplicate value`).
    Duplicate,
    /// The value refers to something that does not exist (`Not found`).
    NotFound,
    /// The value is too long (`Too long`).
    TooLong,
    /// A list has too many items (`Too many`).
    TooMany,
}

impl ErrorKind {
    /// The text the API server prints for this kind, e.g. `Required value`.
    pub fn text(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::NotFound => "Not found",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
        }
    }

    /// The `reason` of a `Status` cause, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
        }
    }
}

// === FieldError ===

/// One validation error on one field.
///
/// `value` is already rendered the way Go's `field.Error` renders a bad value:
/// strings quoted (`"x"`), numbers bare (`-1`). Kinds whose message never shows
/// the value (Required, Forbidden, TooLong) ignore it when displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.containers[0].image`.
    pub path: String,
    /// The error type.
    pub kind: ErrorKind,
    /// The offending value, rendered (quoted string or bare number).
    pub value: Option<String>,
    /// Extra explanation appended after the value.
    pub detail: String,
}

impl FieldError {
    /// `Required value[: detail]`.
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Required, None, detail)
    }

    /// `Forbidden: detail`.
    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Forbidden, None, detail)
    }

    /// `Invalid value: "value": detail` for a string value.
    pub fn invalid_str(path: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(quote(value)), detail)
    }

    /// `Invalid value: N: detail` for a numeric value.
    pub fn invalid_num(path: impl Into<String>, value: i64, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(value.to_string()), detail)
    }

    /// `Invalid value: <raw>: detail` with a value rendered by the caller.
    pub fn invalid_raw(
        path: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(value.into()), detail)
    }

    /// `Unsupported value: "value": supported values: "A", "B"`.
    pub fn not_supported(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = supported.iter().map(|s| quote(s)).collect();
            format!("supported values: {}", list.join(", "))
        };
        Self::new(path, ErrorKind::NotSupported, Some(quote(value)), detail)
    }

    /// `Duplicate value: "value"`.
    pub fn duplicate(path: impl Into<String>, value: &str) -> Self {
        Self::new(path, ErrorKind::Duplicate, Some(quote(value)), "")
    }

    /// `Too many: N: must have at most MAX items` (apimachinery's `field.TooMany`).
    pub fn too_many(path: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(
            path,
            ErrorKind::TooMany,
            Some(actual.to_string()),
            format!("must have at most {max} items"),
        )
    }

    /// `Not found: "value"`.
    pub fn not_found(path: impl Into<String>, value: &str) -> Self {
        Self::new(path, ErrorKind::NotFound, Some(quote(value)), "")
    }

    fn new(
        path: impl Into<String>,
        kind: ErrorKind,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// The message without the field path (upstream `ErrorBody`), which is
    /// what a `Status` cause carries in `message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        match self.kind {
            // Upstream never prints the value for these kinds.
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong => {}
            _ => {
                s.push_str(": ");
                s.push_str(self.value.as_deref().unwrap_or("null"));
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Renders a string the way Go's `%q` does for the common cases: double
/// quotes, with `"` `\` and control characters escaped — as the API server quotes
/// names and values in its messages.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// === Invalid ===

/// An object rejected by validation: the API server's 422 `Invalid` error.
///
/// Display is exactly the `Status.message` the API server sends:
/// `Pod "x" is invalid: <e>` for one distinct error, `Pod "x" is invalid: [e1, e2]`
/// for several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Kind of the object, e.g. `Pod`.
    pub kind: String,
    /// Name of the object (may be empty when the name itself is missing).
    pub name: String,
    /// The errors, in the order upstream validation finds them.
    pub errors: Vec<FieldError>,
}

impl Invalid {
    /// Builds an `Invalid` from a kind, a name and a non-empty error list.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Invalid {
            kind: kind.into(),
            name: name.into(),
            errors,
        }
    }

    /// The lines kubectl prints for this error (`The Pod "x" is invalid: …`,
    /// or one `* …` line per error when there are several).
    pub fn kubectl_message(&self) -> String {
        let distinct = self.distinct_messages();
        let head = format!("The {} {} is invalid", self.kind, quote(&self.name));
        match distinct.len() {
            0 => head,
            1 => format!("{head}: {}", distinct[0]),
            _ => {
                let mut s = format!("{head}: ");
                for m in distinct {
                    s.push_str("\n* ");
                    s.push_str(&m);
                }
                s
            }
        }
    }

    /// Error messages with duplicates removed, first occurrence kept; the
    /// upstream aggregate error does the same before joining.
    fn distinct_messages(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for e in &self.errors {
            let m = e.to_string();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        seen
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let distinct = self.distinct_messages();
        write!(f, "{} {} is invalid", self.kind, quote(&self.name))?;
        match distinct.len() {
            0 => Ok(()),
            1 => write!(f, ": {}", distinct[0]),
            _ => write!(f, ": [{}]", distinct.join(", ")),
        }
    }
}

impl std::error::Error for Invalid {}

// === Path ===

/// A field path under construction (upstream `field.Path`), rendered as
/// `spec.containers[0].name` or `metadata.labels[app]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Self {
        Path(root.to_string())
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{}]", self.0, i))
    }

    pub(crate) fn key(&self, k: &str) -> Self {
        Path(format!("{}[{}]", self.0, k))
    }

    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_upstream_wording() {
        assert_eq!(
            FieldError::required("a", "").to_string(),
            "a: Required value"
        );
        assert_eq!(
            FieldError::required("a", "x y").to_string(),
            "a: Required value: x y"
        );
        assert_eq!(
            FieldError::forbidden("a", "no").to_string(),
            "a: Forbidden: no"
        );
        assert_eq!(
            FieldError::invalid_num("a", -1, "d").to_string(),
            "a: Invalid value: -1: d"
        );
        assert_eq!(
            FieldError::invalid_str("a", "v\"", "d").to_string(),
            "a: Invalid value: \"v\\\"\": d"
        );
        assert_eq!(
            FieldError::not_supported("a", "X", &["A", "B"]).to_string(),
            "a: Unsupported value: \"X\": supported values: \"A\", \"B\""
        );
        assert_eq!(
            FieldError::duplicate("a", "x").to_string(),
            "a: Duplicate value: \"x\""
        );
        assert_eq!(
            FieldError::not_found("a", "x").to_string(),
            "a: Not found: \"x\""
        );
    }

    #[test]
    fn invalid_joins_and_dedupes() {
        let one = Invalid::new(
            "Pod",
            "x",
            vec![FieldError::required("spec.containers", "")],
        );
        assert_eq!(
            one.to_string(),
            "Pod \"x\" is invalid: spec.containers: Required value"
        );
        let two = Invalid::new(
            "Pod",
            "x",
            vec![
                FieldError::required("a", ""),
                FieldError::required("b", ""),
                FieldError::required("a", ""),
            ],
        );
        assert_eq!(
            two.to_string(),
            "Pod \"x\" is invalid: [a: Required value, b: Required value]"
        );
        assert_eq!(
            two.kubectl_message(),
            "The Pod \"x\" is invalid: \n* a: Required value\n* b: Required value"
        );
    }

    #[test]
    fn paths_render_like_field_path() {
        let p = Path::new("spec").child("containers").index(2).child("name");
        assert_eq!(p.as_str(), "spec.containers[2].name");
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
    }
}
