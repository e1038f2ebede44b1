//! Content negotiation: which representation an `Accept` header asks for (plain JSON, a
//! `Table`, `PartialObjectMetadata`), and what a request body's `Content-Type` is.

use crate::status::ApiError;

/// Media types the server produces, for 406 answers.
pub const PRODUCED: &[&str] = &[
    "application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
];

/// Body types the server reads for create and update.
pub const READ: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// The representation of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object or list itself, `application/json`.
    Json,
    /// A `meta.k8s.io` `Table` of the given version (`v1` or `v1beta1`).
    Table(&'static str),
    /// `PartialObjectMetadata` (single) or `PartialObjectMetadataList` (list).
    PartialObjectMetadata(&'static str),
}

impl Output {
    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> String {
        match self {
            Self::Json => "application/json".into(),
            Self::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
            Self::PartialObjectMetadata(v) => {
                format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io")
            }
        }
    }
}

struct MediaRange<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
}

fn parse_range(s: &str) -> MediaRange<'_> {
    let mut parts = s.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
        })
        .collect();
    MediaRange { essence, params }
}

/// Whether one media range is `essence` with exactly the parameters `params` (other
/// parameters allowed).
pub fn is_media_type(range: &str, essence: &str, params: &[(&str, &str)]) -> bool {
    let r = parse_range(range);
    r.essence == essence
        && params
            .iter()
            .all(|(k, v)| r.params.iter().any(|(rk, rv)| rk == k && rv == v))
}

fn meta_version(v: &str) -> Option<&'static str> {
    match v {
        "v1" => Some("v1"),
        "v1beta1" => Some("v1beta1"),
        _ => None,
    }
}

/// Picks the answer's representation from an `Accept` header, first acceptable range
/// first. `list` says whether the answer is a list (for `PartialObjectMetadataList`).
pub fn output(accept: Option<&str>, list: bool) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for range in accept.split(',') {
        let r = parse_range(range);
        let param = |name: &str| r.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        match r.essence.as_str() {
            "application/json" | "application/*" | "*/*" => {}
            _ => continue,
        }
        match param("as") {
            None => return Ok(Output::Json),
            Some(kind) => {
                if param("g") != Some("meta.k8s.io") {
                    continue;
                }
                let Some(v) = param("v").and_then(meta_version) else {
                    continue;
                };
                match kind {
                    "Table" => return Ok(Output::Table(v)),
                    "PartialObjectMetadata" if !list => {
                        return Ok(Output::PartialObjectMetadata(v));
                    }
                    "PartialObjectMetadataList" if list => {
                        return Ok(Output::PartialObjectMetadata(v));
                    }
                    _ => continue,
                }
            }
        }
    }
    Err(ApiError::not_acceptable(PRODUCED))
}

/// The type of a create or update body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// Kubernetes protobuf (`k8s\0` envelope).
    Protobuf,
}

/// Reads a request `Content-Type` for create and update (415 when unknown).
pub fn body_type(content_type: Option<&str>) -> Result<BodyType, ApiError> {
    let essence = content_type
        .map(|c| parse_range(c).essence)
        .unwrap_or_else(|| "application/json".into());
    match essence.as_str() {
        "application/json" | "" => Ok(BodyType::Json),
        "application/yaml" => Ok(BodyType::Yaml),
        "application/vnd.kubernetes.protobuf" => Ok(BodyType::Protobuf),
        _ => Err(ApiError::unsupported_media_type(READ)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_kubectl_sends() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let cases: &[(Option<&str>, bool, Result<Output, u16>)] = &[
            (None, false, Ok(Output::Json)),
            (Some("application/json"), true, Ok(Output::Json)),
            (Some("application/json, */*"), false, Ok(Output::Json)),
            (Some(table), true, Ok(Output::Table("v1"))),
            (
                Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
                false,
                Ok(Output::Table("v1beta1")),
            ),
            (
                Some("application/json;as=Table;v=v2;g=meta.k8s.io,application/json"),
                false,
                Ok(Output::Json),
            ),
            (
                Some("application/vnd.kubernetes.protobuf,application/json"),
                false,
                Ok(Output::Json),
            ),
            (
                Some(
                    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
                ),
                true,
                Ok(Output::PartialObjectMetadata("v1")),
            ),
            (
                Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
                false,
                Ok(Output::PartialObjectMetadata("v1")),
            ),
            (
                Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
                true,
                Err(406),
            ),
            (Some("application/vnd.kubernetes.protobuf"), false, Err(406)),
            (Some("text/html"), false, Err(406)),
        ];
        for (accept, list, want) in cases {
            let got = output(*accept, *list).map_err(|e| e.code);
            assert_eq!(&got, want, "{accept:?} list={list}");
        }
        assert_eq!(
            Output::Table("v1").content_type(),
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        );
    }

    #[test]
    fn body_types() {
        assert_eq!(body_type(None).unwrap(), BodyType::Json);
        assert_eq!(
            body_type(Some("application/json; charset=utf-8")).unwrap(),
            BodyType::Json
        );
        assert_eq!(
            body_type(Some("application/vnd.kubernetes.protobuf")).unwrap(),
            BodyType::Protobuf
        );
        assert_eq!(body_type(Some("application/yaml")).unwrap(), BodyType::Yaml);
        let e = body_type(Some("application/cbor")).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(e.reason, "UnsupportedMediaType");
    }
}
