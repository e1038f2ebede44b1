//! API `Status` errors, with the reasons, codes and messages the Kubernetes API server uses,
//! word for word (`pods "sleep" not found`, `deployments.apps "web" already exists`,
//! `Pod "bad" is invalid: spec.containers: Required value` with `details.causes`).

use serde::Serialize;

use crate::catalogue::Resource;

/// `details` of a `Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    /// Object name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Plural resource (NotFound, AlreadyExists, Conflict) or Kind (Invalid).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Object UID.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Field-level causes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds a client should wait before retrying.
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// One cause of a `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    /// Machine-readable cause (`FieldValueRequired`).
    pub reason: String,
    /// Human-readable text.
    pub message: String,
    /// Field path (`spec.containers[0].image`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// An API error: the HTTP code, reason, message and details of a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code; equals `Status.code`.
    pub code: u16,
    /// `Status.reason` (empty for a plain failure).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when there are any.
    pub details: Option<Box<StatusDetails>>,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

/// A field-level validation error, as apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// `Required value`, with an optional detail.
    Required {
        /// Field path.
        field: String,
        /// Extra text after `Required value: `.
        detail: String,
    },
    /// `Invalid value: <value>: <detail>`.
    Invalid {
        /// Field path.
        field: String,
        /// The offending value, already rendered (`"abc"` with quotes for strings, `3` for numbers).
        value: String,
        /// Why.
        detail: String,
    },
    /// `Unsupported value: <value>: supported values: "a", "b"`.
    NotSupported {
        /// Field path.
        field: String,
        /// The offending value, rendered.
        value: String,
        /// Accepted values.
        supported: Vec<String>,
    },
    /// `Duplicate value: <value>`.
    Duplicate {
        /// Field path.
        field: String,
        /// The duplicated value, rendered.
        value: String,
    },
    /// `Forbidden: <detail>`.
    Forbidden {
        /// Field path.
        field: String,
        /// Why.
        detail: String,
    },
}

impl FieldError {
    /// Renders a string value as the API server does (`"value"`).
    pub fn quote(value: &str) -> String {
        serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
    }

    fn field(&self) -> &str {
        match self {
            Self::Required { field, .. }
            | Self::Invalid { field, .. }
            | Self::NotSupported { field, .. }
            | Self::Duplicate { field, .. }
            | Self::Forbidden { field, .. } => field,
        }
    }

    fn cause_type(&self) -> &'static str {
        match self {
            Self::Required { .. } => "FieldValueRequired",
            Self::Invalid { .. } => "FieldValueInvalid",
            Self::NotSupported { .. } => "FieldValueNotSupported",
            Self::Duplicate { .. } => "FieldValueDuplicate",
            Self::Forbidden { .. } => "FieldValueForbidden",
        }
    }

    /// The text after the field path (`Required value`).
    pub fn body(&self) -> String {
        match self {
            Self::Required { detail, .. } if detail.is_empty() => "Required value".into(),
            Self::Required { detail, .. } => format!("Required value: {detail}"),
            Self::Forbidden { detail, .. } if detail.is_empty() => "Forbidden".into(),
            Self::Forbidden { detail, .. } => format!("Forbidden: {detail}"),
            Self::Invalid { value, detail, .. } if detail.is_empty() => {
                format!("Invalid value: {value}")
            }
            Self::Invalid { value, detail, .. } => format!("Invalid value: {value}: {detail}"),
            Self::NotSupported {
                value, supported, ..
            } => {
                let list: Vec<String> = supported.iter().map(|s| Self::quote(s)).collect();
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                )
            }
            Self::Duplicate { value, .. } => format!("Duplicate value: {value}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field(), self.body())
    }
}

impl ApiError {
    fn new(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<StatusDetails>,
    ) -> Self {
        Self {
            code,
            reason,
            message,
            details: details.map(Box::new),
        }
    }

    fn object_details(resource: &Resource, name: &str) -> StatusDetails {
        StatusDetails {
            name: name.to_owned(),
            group: resource.gvk.group.to_owned(),
            kind: resource.plural.to_owned(),
            ..Default::default()
        }
    }

    /// 404: `pods "sleep" not found`.
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {:?} not found", resource.group_resource(), name),
            Some(Self::object_details(resource, name)),
        )
    }

    /// 404 for a path nothing is served at.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(StatusDetails::default()),
        )
    }

    /// 409: `pods "sleep" already exists`.
    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {:?} already exists", resource.group_resource(), name),
            Some(Self::object_details(resource, name)),
        )
    }

    /// 409 on a stale `resourceVersion`.
    pub fn conflict(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
                resource.group_resource(),
                name
            ),
            Some(Self::object_details(resource, name)),
        )
    }

    /// 422: `Pod "bad" is invalid: …` with one cause per field error (duplicates dropped).
    pub fn invalid(resource: &Resource, name: &str, errors: &[FieldError]) -> Self {
        let mut unique: Vec<&FieldError> = Vec::new();
        for e in errors {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        let aggregate = match unique.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes = unique
            .iter()
            .map(|e| StatusCause {
                reason: e.cause_type().into(),
                message: e.body(),
                field: e.field().into(),
            })
            .collect();
        Self::new(
            422,
            "Invalid",
            format!(
                "{} {:?} is invalid: {aggregate}",
                resource.group_kind(),
                name
            ),
            Some(StatusDetails {
                name: name.into(),
                group: resource.gvk.group.into(),
                kind: resource.gvk.kind.into(),
                causes,
                ..Default::default()
            }),
        )
    }

    /// 400 with free text.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// 401 for a request without valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_supported(resource: &Resource, action: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {:?}",
                resource.group_resource()
            ),
            Some(StatusDetails {
                group: resource.gvk.group.into(),
                kind: resource.plural.into(),
                ..Default::default()
            }),
        )
    }

    /// 406 when no acceptable media type can be produced.
    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 415 for a request body type the server cannot read.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 415 with a message of its own.
    pub fn unsupported_media_type_with(message: String) -> Self {
        Self::new(415, "UnsupportedMediaType", message, None)
    }

    /// 410 for a `resourceVersion` older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into(), None)
    }

    /// 413 for a body over the limit.
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        )
    }

    /// 500 with the cause in `details.causes`.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        let text = err.to_string();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {text}"),
            Some(StatusDetails {
                causes: vec![StatusCause {
                    reason: String::new(),
                    message: text,
                    field: String::new(),
                }],
                ..Default::default()
            }),
        )
    }

    /// The `Status` object as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_deref(),
            code: Some(self.code),
        };
        serde_json::to_vec(&body).expect("a Status always serialises")
    }

    /// The `Status` object as a JSON value (for watch `ERROR` events).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.to_json()).expect("a Status is valid JSON")
    }
}

/// The `Success` Status an immediate delete answers with.
pub fn delete_success(resource: &Resource, name: &str, uid: &str) -> Vec<u8> {
    let details = StatusDetails {
        name: name.into(),
        group: resource.gvk.group.into(),
        kind: resource.plural.into(),
        uid: uid.into(),
        ..Default::default()
    };
    let body = StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Success",
        message: "",
        reason: "",
        details: Some(&details),
        code: None,
    };
    serde_json::to_vec(&body).expect("a Status always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::lookup;
    use serde_json::{Value, json};

    fn body(e: &ApiError) -> Value {
        serde_json::from_slice(&e.to_json()).unwrap()
    }

    #[test]
    fn not_found_and_already_exists_word_for_word() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            body(&ApiError::not_found(pods, "sleep")),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"pods \"sleep\" not found","reason":"NotFound",
                   "details":{"name":"sleep","kind":"pods"},"code":404})
        );
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        let e = ApiError::already_exists(deploy, "web");
        assert_eq!(e.message, "deployments.apps \"web\" already exists");
        assert_eq!(
            body(&e)["details"],
            json!({"name":"web","group":"apps","kind":"deployments"})
        );
        let c = ApiError::conflict(pods, "sleep");
        assert_eq!(
            c.message,
            "Operation cannot be fulfilled on pods \"sleep\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(c.code, 409);
    }

    #[test]
    fn invalid_with_one_and_several_causes() {
        let pods = lookup("", "v1", "pods").unwrap();
        let one = ApiError::invalid(
            pods,
            "bad",
            &[FieldError::Required {
                field: "spec.containers".into(),
                detail: String::new(),
            }],
        );
        assert_eq!(
            one.message,
            "Pod \"bad\" is invalid: spec.containers: Required value"
        );
        let two = ApiError::invalid(
            pods,
            "bad2",
            &[
                FieldError::Required {
                    field: "spec.containers[0].image".into(),
                    detail: String::new(),
                },
                FieldError::Required {
                    field: "spec.containers[1].image".into(),
                    detail: String::new(),
                },
            ],
        );
        assert_eq!(
            body(&two),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
             "message":"Pod \"bad2\" is invalid: [spec.containers[0].image: Required value, spec.containers[1].image: Required value]",
             "reason":"Invalid",
             "details":{"name":"bad2","kind":"Pod","causes":[
               {"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"},
               {"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[1].image"}]},
             "code":422})
        );
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        let e = ApiError::invalid(
            deploy,
            "web",
            &[FieldError::NotSupported {
                field: "spec.strategy.type".into(),
                value: FieldError::quote("Fast"),
                supported: vec!["Recreate".into(), "RollingUpdate".into()],
            }],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: spec.strategy.type: Unsupported value: \"Fast\": supported values: \"Recreate\", \"RollingUpdate\""
        );
        assert_eq!(body(&e)["details"]["group"], "apps");
        let dup = ApiError::invalid(
            pods,
            "x",
            &[
                FieldError::Invalid {
                    field: "metadata.name".into(),
                    value: FieldError::quote("A"),
                    detail: "a lowercase RFC 1123 subdomain".into(),
                },
                FieldError::Invalid {
                    field: "metadata.name".into(),
                    value: FieldError::quote("A"),
                    detail: "a lowercase RFC 1123 subdomain".into(),
                },
            ],
        );
        assert_eq!(
            dup.message,
            "Pod \"x\" is invalid: metadata.name: Invalid value: \"A\": a lowercase RFC 1123 subdomain"
        );
    }

    #[test]
    fn other_statuses() {
        assert_eq!(
            body(&ApiError::unauthorized()),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"Unauthorized","reason":"Unauthorized","code":401})
        );
        assert_eq!(
            body(&ApiError::path_not_found())["message"],
            "the server could not find the requested resource"
        );
        let e = ApiError::unsupported_media_type(&["application/json", "application/yaml"]);
        assert_eq!(e.code, 415);
        assert!(e.message.starts_with("the body of the request was in an unknown format - accepted media types include: application/json"));
        assert_eq!(
            ApiError::expired("too old resource version: 5 (1200)").code,
            410
        );
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        let ok: Value = serde_json::from_slice(&delete_success(deploy, "web", "u-1")).unwrap();
        assert_eq!(
            ok,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
                   "details":{"name":"web","group":"apps","kind":"deployments","uid":"u-1"}})
        );
    }
}
