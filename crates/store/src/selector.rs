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
            Some(Tok::Ident(k)) => {
                validate::label_key(&k)?;
                Ok(k)
            }
            other => Err(unexpected(other.as_ref(), "identifier")),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(_)) => {
                let Some(Tok::Ident(v)) = self.next() else {
                    unreachable!("peeked an identifier")
                };
                validate::label_value(&v)?;
                Ok(v)
            }
            // `a=` selects the empty value.
            None | Some(Tok::Comma) | Some(Tok::Close) => Ok(String::new()),
            other => Err(unexpected(other, "identifier")),
        }
    }

    fn values(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::Open) => {}
            other => return Err(unexpected(other.as_ref(), "'('")),
        }
        let mut vals = Vec::new();
        loop {
            vals.push(self.value()?);
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::Close) => break,
                other => return Err(unexpected(other.as_ref(), "',' or ')'")),
            }
        }
        Ok(vals)
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            return Ok(Requirement::DoesNotExist(self.key()?));
        }
        let key = self.key()?;
        Ok(match self.peek() {
            None | Some(Tok::Comma) => Requirement::Exists(key),
            Some(Tok::Eq | Tok::DoubleEq) => {
                self.next();
                Requirement::Equals(key, self.value()?)
            }
            Some(Tok::NotEq) => {
                self.next();
                Requirement::NotEquals(key, self.value()?)
            }
            Some(Tok::In) => {
                self.next();
                Requirement::In(key, self.values()?)
            }
            Some(Tok::NotIn) => {
                self.next();
                Requirement::NotIn(key, self.values()?)
            }
            Some(Tok::Gt | Tok::Lt) => {
                let gt = self.next() == Some(Tok::Gt);
                let n = match self.next() {
                    Some(Tok::Ident(v)) => v.parse::<i64>().map_err(|_| {
                        format!(
                            "for 'Gt', 'Lt' operators, the value must be an integer: {}",
                            quote(&v)
                        )
                    })?,
                    other => return Err(unexpected(other.as_ref(), "identifier")),
                };
                if gt {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                }
            }
            other => {
                return Err(unexpected(
                    other,
                    "'=', '!=', '==', 'in', 'notin', '>', '<'",
                ));
            }
        })
    }
}

impl LabelSelector {
    /// Parse `labelSelector` as the API server does; a bad one is a 400 BadRequest.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut p = Parser {
            toks: tokens(s),
            pos: 0,
        };
        let mut reqs = Vec::new();
        if p.toks.is_empty() {
            return Ok(LabelSelector(reqs));
        }
        loop {
            let r = p
                .requirement()
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
            reqs.push(r);
            match p.next() {
                None => break,
                Some(Tok::Comma) => continue,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse requirement: {}",
                        unexpected(other.as_ref(), "','")
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
}
