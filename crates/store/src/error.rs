//! Errors as the API server answers them: a `Status` with the HTTP code, the reason and
//! the message, word for word, so a server can put them on the wire unchanged.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::resource::ResourceType;

/// An API error: the `Status` the API server would answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError(pub Box<Status>);

/// Result alias for store operations.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One invalid field, as the API server's `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The `StatusCause` reason (`FieldValueInvalid`, `FieldValueRequired`, …).
    pub reason: &'static str,
    /// The field path (`metadata.name`).
    pub field: String,
    /// The text after the field path (`Invalid value: "X": …`).
    pub detail: String,
}

impl FieldError {
    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: &str, value: &str, detail: &str) -> FieldError {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            detail: format!("Invalid value: {}: {detail}", quote(value)),
        }
    }

    /// `field: Required value: detail` (or just `Required value`).
    pub fn required(field: &str, detail: &str) -> FieldError {
        let detail = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            field: field.to_string(),
            detail,
        }
    }

    /// `field: Unsupported value: "value": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &str, supported: &[&str]) -> FieldError {
        let list = supported
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(", ");
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.to_string(),
            detail: format!(
                "Unsupported value: {}: supported values: {list}",
                quote(value)
            ),
        }
    }

    /// `field: Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            detail: format!("Forbidden: {detail}"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

pub(crate) use podrun_model::quote;

impl ApiError {
    fn new(code: i32, reason: &str, message: String, details: Option<StatusDetails>) -> ApiError {
        ApiError(Box::new(Status {
            code: Some(code),
            details,
            message: Some(message),
            metadata: ListMeta::default(),
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            status: Some("Failure".to_string()),
        }))
    }

    fn details(rt: &ResourceType, name: &str) -> StatusDetails {
        StatusDetails {
            group: (!rt.group.is_empty()).then(|| rt.group.to_string()),
            kind: Some(rt.plural.to_string()),
            name: Some(name.to_string()),
            ..StatusDetails::default()
        }
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {} not found", rt.qualified(), quote(name)),
            Some(ApiError::details(rt, name)),
        )
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {} already exists", rt.qualified(), quote(name)),
            Some(ApiError::details(rt, name)),
        )
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "x": <why>`.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {why}",
                rt.qualified(),
                quote(name)
            ),
            Some(ApiError::details(rt, name)),
        )
    }

    /// The Conflict of a stale `resourceVersion`.
    pub fn modified(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict(rt, name, OBJECT_MODIFIED)
    }

    /// 422 Invalid: `Pod "x" is invalid: <field errors>` with one cause per error.
    pub fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> ApiError {
        let list = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes = errors
            .iter()
            .map(|e| StatusCause {
                field: Some(e.field.clone()),
                message: Some(e.detail.clone()),
                reason: Some(e.reason.to_string()),
            })
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("{} {} is invalid: {list}", rt.kind, quote(name)),
            Some(StatusDetails {
                causes: Some(causes),
                group: (!rt.group.is_empty()).then(|| rt.group.to_string()),
                kind: Some(rt.kind.to_string()),
                name: Some(name.to_string()),
                ..StatusDetails::default()
            }),
        )
    }

    /// 422 Invalid for bad list or watch options (`ListOptions.meta.k8s.io "" is invalid: …`).
    pub fn invalid_options(list: &str, errors: &[FieldError]) -> ApiError {
        let causes = errors
            .iter()
            .map(|e| StatusCause {
                field: Some(e.field.clone()),
                message: Some(e.detail.clone()),
                reason: Some(e.reason.to_string()),
            })
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {list}"),
            Some(StatusDetails {
                causes: Some(causes),
                group: Some("meta.k8s.io".into()),
                kind: Some("ListOptions".into()),
                ..StatusDetails::default()
            }),
        )
    }

    /// 403 Forbidden: `pods "x" is forbidden: <why>`.
    pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} {} is forbidden: {why}", rt.qualified(), quote(name)),
            Some(ApiError::details(rt, name)),
        )
    }

    /// 400 BadRequest with free text.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into(), None)
    }

    /// 410 Gone, reason `Expired`.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message.into(), None)
    }

    /// 410 `too old resource version: N (M)`, as the watch cache says it.
    pub fn too_old(requested: u64, oldest: u64) -> ApiError {
        ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 504 `Too large resource version: N, current: M` (reason `Timeout`), for a read
    /// at a revision not yet written.
    pub fn too_large(requested: u64, current: u64) -> ApiError {
        ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
            Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ResourceVersionTooLarge".into()),
                    message: Some("Too large resource version".into()),
                    ..StatusCause::default()
                }]),
                retry_after_seconds: Some(1),
                ..StatusDetails::default()
            }),
        )
    }

    /// 500 `Internal error occurred: <cause>` (a storage failure).
    pub fn internal(cause: impl fmt::Display) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {cause}"),
            Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    message: Some(cause.to_string()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
        )
    }

    /// The HTTP status code.
    pub fn code(&self) -> i32 {
        self.0.code.unwrap_or(500)
    }

    /// The machine-readable reason (`NotFound`, `Conflict`, …).
    pub fn reason(&self) -> &str {
        self.0.reason.as_deref().unwrap_or("")
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        self.0.message.as_deref().unwrap_or("")
    }

    /// The `Status` as JSON, with `kind` and `apiVersion`, as it goes on the wire.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&*self.0).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("kind".into(), "Status".into());
            map.insert("apiVersion".into(), "v1".into());
        }
        v
    }
}

/// The text of a Conflict for a stale `resourceVersion`.
pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ApiError {}
