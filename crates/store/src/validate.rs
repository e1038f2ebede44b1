//! Name rules, checked before a name touches a key: DNS-1123 subdomains and labels and
//! DNS-1035 labels, with the API server's messages; and the path-segment rule that every
//! name in a request path must pass.

use crate::error::FieldError;

/// The rule a kind's `metadata.name` must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: at most 253 characters (most kinds).
    Subdomain,
    /// DNS-1123 label: at most 63 characters (Namespace).
    Label,
    /// DNS-1035 label: a label that starts with a letter (Service).
    Dns1035Label,
    /// A subdomain of at most 52 characters (CronJob).
    CronJob,
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_label)
}

fn is_dns1035(s: &str) -> bool {
    is_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

impl NameRule {
    /// The field errors of `name` under this rule (empty when valid), reported at `field`.
    pub fn check(self, field: &str, name: &str) -> Vec<FieldError> {
        let (max, ok, msg) = match self {
            NameRule::Subdomain => (253, is_subdomain(name), SUBDOMAIN_MSG),
            NameRule::CronJob => (52, is_subdomain(name), SUBDOMAIN_MSG),
            NameRule::Label => (63, is_label(name), LABEL_MSG),
            NameRule::Dns1035Label => (63, is_dns1035(name), DNS1035_MSG),
        };
        let mut errs = Vec::new();
        if name.len() > max {
            errs.push(FieldError::invalid(
                field,
                name,
                &format!("must be no more than {max} characters"),
            ));
        }
        if !ok {
            errs.push(FieldError::invalid(field, name, msg));
        }
        errs
    }
}

/// The API server's check on a name taken from a request path: `Err` holds its reasons.
pub fn path_segment(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("may not be '{name}'"));
    }
    let mut why = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            why.push(format!("may not contain '{bad}'"));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join(", "))
    }
}

/// A label key or value check, for selectors: `Err` holds the reason.
pub(crate) fn label_value(v: &str) -> Result<(), String> {
    let ok = v.len() <= 63
        && (v.is_empty()
            || (v
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                && v.as_bytes()[0].is_ascii_alphanumeric()
                && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(if v.len() > 63 {
            "must be no more than 63 characters".to_string()
        } else {
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string()
        })
    }
}

/// A qualified label key (`[prefix/]name`) check: `Err` holds the reason.
pub(crate) fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && is_subdomain(p));
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(if !prefix_ok {
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
        } else {
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rule() {
        assert!(
            NameRule::Subdomain
                .check("metadata.name", "a.b-c")
                .is_empty()
        );
        assert!(!NameRule::Subdomain.check("metadata.name", "A").is_empty());
        assert!(!NameRule::Label.check("metadata.name", "a.b").is_empty());
        assert!(NameRule::Label.check("metadata.name", "9a").is_empty());
        assert!(
            !NameRule::Dns1035Label
                .check("metadata.name", "9a")
                .is_empty()
        );
        assert_eq!(
            NameRule::CronJob
                .check("metadata.name", &"a".repeat(53))
                .len(),
            1
        );
        let e = &NameRule::Subdomain.check("metadata.name", "Bad_")[0];
        assert_eq!(e.field, "metadata.name");
        assert!(
            e.detail
                .starts_with("Invalid value: \"Bad_\": a lowercase RFC 1123 subdomain")
        );
        assert_eq!(path_segment("a/b"), Err("may not contain '/'".into()));
        assert_eq!(path_segment(".."), Err("may not be '..'".into()));
    }
}
