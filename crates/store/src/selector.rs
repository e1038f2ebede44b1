//! Label selectors (the full set-based syntax: `=`, `==`, `!=`, `in`, `notin`, exists,
//! `!` not-exists, `>` and `<`) and field selectors (`=`, `==`, `!=` on the labels a kind
//! answers), parsed as the API server parses them and matched against JSON objects.

use serde_json::Value;

use crate::error::{ApiError, quote};
use crate::resource::ResourceType;
use crate::validate;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key` — the label is set.
    Exists(String),
    /// `!key` — the label is not set.
    DoesNotExist(String),
    /// `key=v`, `key==v`.
    Equals(String, String),
    /// `key!=v` (true when the label is not set).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (true when the label is not set).
    NotIn(String, Vec<String>),
    /// `key>n` (integer comparison).
    GreaterThan(String, i64),
    /// `key<n` (integer comparison).
    LessThan(String, i64),
}

/// A label selector: every requirement must hold. The empty selector matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

fn tokens(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(Tok::NotEq);
                } else {
                    out.push(Tok::Not);
                }
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(Tok::DoubleEq);
                } else {
                    out.push(Tok::Eq);
                }
            }
            '(' | ')' | ',' | '>' | '<' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    ',' => Tok::Comma,
                    '>' => Tok::Gt,
                    _ => Tok::Lt,
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "!=(),<>".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                });
            }
        }
    }
    out
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => String::new(),
        Some(Tok::Ident(s)) => s.clone(),
        Some(Tok::Not) => "!".into(),
        Some(Tok::Eq) => "=".into(),
        Some(Tok::DoubleEq) => "==".into(),
        Some(Tok::NotEq) => "!=".into(),
        Some(Tok::In) => "in".into(),
        Some(Tok::NotIn) => "notin".into(),
        Some(Tok::Open) => "(".into(),
        Some(Tok::Close) => ")".into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::Gt) => ">".into(),
        Some(Tok::Lt) => "<".into(),
    }
}

fn unexpected(t: Option<&Tok>, expected: &str) -> String {
    format!("found '{}', expected: {expected}", describe(t))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn key(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(k)) => Ok(k),
            other => Err(unexpected(other.as_ref(), "identifier")),
        }
    }

    /// The one value of `=`, `==`, `!=` (empty at the end or before a comma).
    fn exact_value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(Tok::Comma) => Ok(String::new()),
            _ => match self.next() {
                Some(Tok::Ident(v)) => Ok(v),
                other => Err(unexpected(other.as_ref(), "identifier")),
            },
        }
    }

    /// `(a, b)`; empty members are the empty value.
    fn values(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::Open) => {}
            other => {
                return Err(format!(
                    "found '{}' expected: '('",
                    describe(other.as_ref())
                ));
            }
        }
        let mut vals = Vec::new();
        match self.peek() {
            Some(Tok::Close) => {
                self.next();
                return Ok(vec![String::new()]);
            }
            Some(Tok::Ident(_) | Tok::Comma) => {}
            other => return Err(unexpected(other, "',', ')' or identifier")),
        }
        loop {
            match self.next() {
                Some(Tok::Ident(v)) => {
                    vals.push(v);
                    match self.peek() {
                        Some(Tok::Comma) => {
                            self.next();
                            if matches!(self.peek(), Some(Tok::Close)) {
                                vals.push(String::new());
                            }
                        }
                        Some(Tok::Close) => {}
                        other => return Err(unexpected(other, "',' or ')'")),
                    }
                }
                Some(Tok::Comma) => vals.push(String::new()),
                Some(Tok::Close) => return Ok(vals),
                other => return Err(unexpected(other.as_ref(), "',', or identifier")),
            }
            if matches!(self.peek(), Some(Tok::Close)) {
                self.next();
                return Ok(vals);
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            let key = self.key()?;
            check_key(&key)?;
            return Ok(Requirement::DoesNotExist(key));
        }
        let key = self.key()?;
        let req = match self.peek() {
            None | Some(Tok::Comma) => {
                check_key(&key)?;
                return Ok(Requirement::Exists(key));
            }
            Some(Tok::Eq | Tok::DoubleEq) => {
                self.next();
                Requirement::Equals(key.clone(), self.exact_value()?)
            }
            Some(Tok::NotEq) => {
                self.next();
                Requirement::NotEquals(key.clone(), self.exact_value()?)
            }
            Some(Tok::In) => {
                self.next();
                Requirement::In(key.clone(), self.values()?)
            }
            Some(Tok::NotIn) => {
                self.next();
                Requirement::NotIn(key.clone(), self.values()?)
            }
            Some(Tok::Gt | Tok::Lt) => {
                let gt = self.next() == Some(Tok::Gt);
                let v = self.exact_value()?;
                check_key(&key)?;
                let n = v.parse::<i64>().map_err(|_| {
                    format!(
                        "values[0]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                        quote(&v)
                    )
                })?;
                return Ok(if gt {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                });
            }
            other => {
                return Err(unexpected(other, "'=', '!=', '==', 'in', notin'"));
            }
        };
        check_key(&key)?;
        let values: &[String] = match &req {
            Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => std::slice::from_ref(v),
            Requirement::In(_, vs) | Requirement::NotIn(_, vs) => vs,
            _ => &[],
        };
        for (i, v) in values.iter().enumerate() {
            validate::label_value(v)
                .map_err(|why| format!("values[{i}][{key}]: Invalid value: {}: {why}", quote(v)))?;
        }
        Ok(req)
    }
}

fn check_key(key: &str) -> Result<(), String> {
    validate::label_key(key).map_err(|why| format!("key: Invalid value: {}: {why}", quote(key)))
}

impl LabelSelector {
    /// Parse `labelSelector` as the API server does; a bad one is a 400 BadRequest.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut p = Parser {
            toks: tokens(s),
            pos: 0,
        };
        let mut reqs = Vec::new();
        loop {
            match p.peek() {
                None => break,
                Some(Tok::Ident(_) | Tok::Not) => {}
                other => {
                    return Err(ApiError::bad_request(unexpected(
                        other,
                        "!, identifier, or 'end of string'",
                    )));
                }
            }
            let r = p
                .requirement()
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
            reqs.push(r);
            match p.next() {
                None => break,
                Some(Tok::Comma) => match p.peek() {
                    Some(Tok::Ident(_) | Tok::Not) => {}
                    other => {
                        return Err(ApiError::bad_request(unexpected(
                            other,
                            "identifier after ','",
                        )));
                    }
                },
                other => {
                    return Err(ApiError::bad_request(unexpected(
                        other.as_ref(),
                        "',' or 'end of string'",
                    )));
                }
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Does an object's `metadata.labels` satisfy every requirement?
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::GreaterThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::LessThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }

    /// True for the selector that selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One field requirement: label, value, and whether it must equal (`=`, `==`) or differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label (`spec.nodeName`).
    pub label: String,
    /// The value.
    pub value: String,
    /// `=`/`==` (true) or `!=` (false).
    pub equals: bool,
}

/// A field selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

/// Split on unescaped `sep`, keeping escapes for the next step.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(p) = parts.last_mut() {
                p.push('\\');
                p.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".to_string()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parse `fieldSelector` and check each label against what `rt` answers: a bad
    /// selector or an unknown label is a 400 BadRequest, in the API server's words.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(reqs));
        }
        for term in split_unescaped(s, ',') {
            let (label, value, equals) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let label = unescape(label.trim()).map_err(ApiError::bad_request)?;
            let value = unescape(value).map_err(ApiError::bad_request)?;
            if rt.field_value(&label, &Value::Null).is_none() {
                return Err(ApiError::bad_request(rt.unknown_field_message(&label)));
            }
            reqs.push(FieldRequirement {
                label,
                value,
                equals,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Does the object satisfy every requirement?
    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let v = rt.field_value(&r.label, obj).unwrap_or_default();
            (v == r.value) == r.equals
        })
    }

    /// Does it select everything (no requirements)?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value a `metadata.name=` requirement pins, if any (a list can then read one key).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equals && r.label == "metadata.name")
            .map(|r| r.value.as_str())
    }
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Label and field selectors of one list or watch, with the namespace it is scoped to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// Parse both selectors (empty strings select everything).
    pub fn parse(rt: &ResourceType, labels: &str, fields: &str) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(labels)?,
            fields: FieldSelector::parse(fields, rt)?,
        })
    }

    /// Does the object pass both selectors?
    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(rt, obj)
    }

    /// Does it select everything (neither selector has a requirement)?
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        LabelSelector::parse(s).expect_err(s).message().to_string()
    }

    #[test]
    fn label_selector_syntax() {
        let sel = LabelSelector::parse("a in (x,,y), !b, c!=, d notin ()").expect("valid");
        assert_eq!(
            sel.0,
            [
                Requirement::In("a".into(), vec!["x".into(), String::new(), "y".into()]),
                Requirement::DoesNotExist("b".into()),
                Requirement::NotEquals("c".into(), String::new()),
                Requirement::NotIn("d".into(), vec![String::new()]),
            ]
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'"
        );
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(
            err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a in (x y)"),
            "unable to parse requirement: found 'y', expected: ',' or ')'"
        );
        assert_eq!(
            err("n>x"),
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert!(err("A=-x").starts_with("unable to parse requirement: values[0][A]: Invalid value: \"-x\": a valid label must be"));
        assert!(err("-a=b").starts_with(
            "unable to parse requirement: key: Invalid value: \"-a\": name part must consist"
        ));
    }

    #[test]
    fn field_selector_escapes() {
        let rt = ResourceType::PODS;
        let f = FieldSelector::parse("metadata.name=a\\,b,spec.nodeName!=n", &rt).expect("valid");
        assert_eq!(f.0[0].value, "a,b");
        assert!(!f.0[1].equals);
        assert_eq!(f.name(), Some("a,b"));
    }
}
