//! The router: a request's method, path and query string into what it asks for — a
//! discovery, OpenAPI or version document, or a resource request with its verb, resource,
//! namespace, name, subresource and options — as the API server's request-info parser
//! reads them. Pure: no I/O.

use crate::catalogue::{self, Resource, Scope, Subresource};
use crate::status::ApiError;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /version`.
    Version,
    /// `GET /api`.
    CoreDiscovery,
    /// `GET /apis`.
    GroupDiscovery,
    /// `GET /apis/{group}`.
    Group(String),
    /// `GET /api/v1`, `GET /apis/{group}/{version}`.
    ResourceList {
        /// API group, `""` for core.
        group: String,
        /// API version.
        version: String,
    },
    /// `GET /openapi/v3`.
    OpenApiIndex,
    /// `GET /openapi/v2`.
    OpenApiV2,
    /// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
    OpenApiDocument {
        /// API group.
        group: String,
        /// API version.
        version: String,
    },
    /// `GET /healthz`, `/livez`, `/readyz`.
    Health,
    /// A request on a resource.
    Resource(Box<ResourceRequest>),
}

/// A resource verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object (or subresource).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// The verb as discovery and RBAC name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// Query parameters of a resource request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector` (for a watch on a named object, `metadata.name=<name>` is added).
    pub field_selector: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch` (`Exact`, `NotOlderThan`).
    pub resource_version_match: Option<String>,
    /// `limit`.
    pub limit: Option<i64>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<i64>,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation` (`Strict`, `Warn`, `Ignore`).
    pub field_validation: Option<String>,
    /// `dryRun` values (`All`).
    pub dry_run: Vec<String>,
    /// `force` (server-side apply).
    pub force: Option<bool>,
    /// `includeObject` (Table output).
    pub include_object: Option<String>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// Parameters kept for subresources (`container`, `follow`, `command`, …), in order.
    pub other: Vec<(String, String)>,
}

/// A request on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The verb.
    pub verb: Verb,
    /// The resource.
    pub resource: &'static Resource,
    /// The subresource, if the path names one.
    pub subresource: Option<&'static Subresource>,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Options from the query string.
    pub query: Query,
}

/// Parses a boolean query value as Go's `strconv.ParseBool` does.
pub(crate) fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name}: Invalid value: {v:?}: strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, ApiError> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name}: Invalid value: {v:?}: strconv.ParseInt: parsing {v:?}: invalid syntax"
        ))
    })
}

/// Parses a query string (without `?`). Returns the options and whether `watch` was set.
pub fn parse_query(query: &str) -> Result<(Query, bool), ApiError> {
    let mut q = Query::default();
    let mut watch = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "labelSelector" => q.label_selector = Some(v),
            "fieldSelector" => q.field_selector = Some(v),
            "resourceVersion" => q.resource_version = Some(v),
            "resourceVersionMatch" => q.resource_version_match = Some(v),
            "limit" => q.limit = Some(parse_int("limit", &v)?),
            "continue" => q.continue_token = Some(v),
            "timeoutSeconds" => q.timeout_seconds = Some(parse_int("timeoutSeconds", &v)?),
            "allowWatchBookmarks" => {
                q.allow_watch_bookmarks = parse_bool("allowWatchBookmarks", &v)?
            }
            "sendInitialEvents" => {
                q.send_initial_events = Some(parse_bool("sendInitialEvents", &v)?)
            }
            "watch" => watch = parse_bool("watch", &v)?,
            "fieldManager" => q.field_manager = Some(v),
            "fieldValidation" => q.field_validation = Some(v),
            "dryRun" => q.dry_run.push(v),
            "force" => q.force = Some(parse_bool("force", &v)?),
            "includeObject" => q.include_object = Some(v),
            "propagationPolicy" => q.propagation_policy = Some(v),
            "gracePeriodSeconds" => {
                q.grace_period_seconds = Some(parse_int("gracePeriodSeconds", &v)?);
            }
            // Client hints with no effect on the answer.
            "timeout" | "pretty" => {}
            other => q.other.push((other.to_owned(), v)),
        }
    }
    if let Some(m) = q.field_validation.as_deref()
        && !matches!(m, "Strict" | "Warn" | "Ignore" | "")
    {
        return Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {m:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        )));
    }
    Ok((q, watch))
}

fn method_not_allowed() -> ApiError {
    ApiError {
        code: 405,
        reason: "MethodNotAllowed",
        message: "the server does not allow this method on the requested resource".into(),
        details: None,
    }
}

/// Routes a request. `method` is the HTTP method, `path` the path without query.
pub fn route(method: &http::Method, path: &str, query: &str) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
    let get_only = |r: Route| {
        if method == http::Method::GET || method == http::Method::HEAD {
            Ok(r)
        } else {
            Err(method_not_allowed())
        }
    };
    match parts.as_slice() {
        ["version"] => return get_only(Route::Version),
        ["healthz" | "livez" | "readyz"] => return get_only(Route::Health),
        ["api"] => return get_only(Route::CoreDiscovery),
        ["apis"] => return get_only(Route::GroupDiscovery),
        ["openapi", "v2"] => return get_only(Route::OpenApiV2),
        ["openapi", "v3"] => return get_only(Route::OpenApiIndex),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            return match crate::openapi::parse_group_version(&gv) {
                Some((g, v)) => get_only(Route::OpenApiDocument {
                    group: g.into(),
                    version: v.into(),
                }),
                None => Err(ApiError::path_not_found()),
            };
        }
        ["api", version] => {
            return get_only(Route::ResourceList {
                group: String::new(),
                version: (*version).into(),
            });
        }
        ["apis", group] => return get_only(Route::Group((*group).into())),
        ["apis", group, version] => {
            return get_only(Route::ResourceList {
                group: (*group).into(),
                version: (*version).into(),
            });
        }
        _ => {}
    }
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (mut query, mut watch) = parse_query(query)?;
    let mut rest: &[&str] = rest;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_owned());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::path_not_found()),
    };
    let resource =
        catalogue::lookup(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    // `/api/v1/namespaces/x` names the namespace itself.
    if resource.scope == Scope::Cluster {
        if plural == "namespaces" {
            namespace = None;
        } else if namespace.is_some() {
            return Err(ApiError::path_not_found());
        }
    }
    let subresource = match sub {
        Some(s) => Some(
            resource
                .subresource(s)
                .ok_or_else(ApiError::path_not_found)?,
        ),
        None => None,
    };
    let name = name.map(str::to_owned);
    let verb = match (method.as_str(), &name, subresource) {
        ("GET" | "HEAD", None, _) if watch => Verb::Watch,
        ("GET" | "HEAD", Some(_), None) if watch => Verb::Watch,
        ("GET" | "HEAD", None, _) => Verb::List,
        ("GET" | "HEAD", Some(_), _) => Verb::Get,
        ("POST", None, _) => Verb::Create,
        ("POST", Some(_), Some(_)) => Verb::Create,
        ("PUT", Some(_), _) => Verb::Update,
        ("PATCH", Some(_), _) => Verb::Patch,
        ("DELETE", Some(_), None) => Verb::Delete,
        ("DELETE", None, _) => Verb::DeleteCollection,
        _ => return Err(method_not_allowed()),
    };
    if resource.scope == Scope::Namespaced
        && namespace.is_none()
        && !matches!(verb, Verb::List | Verb::Watch)
    {
        return Err(if name.is_some() {
            ApiError::path_not_found()
        } else {
            method_not_allowed()
        });
    }
    let allowed = match subresource {
        Some(s) => s.verbs.contains(&verb.as_str()),
        None => resource.supports(verb.as_str()),
    };
    if !allowed {
        return Err(ApiError::method_not_supported(resource, verb.as_str()));
    }
    let mut name = name;
    if verb == Verb::Watch
        && let Some(n) = name.take()
    {
        let by_name = format!("metadata.name={n}");
        query.field_selector = Some(match query.field_selector.take() {
            Some(f) if !f.is_empty() => format!("{f},{by_name}"),
            _ => by_name,
        });
    }
    Ok(Route::Resource(Box::new(ResourceRequest {
        verb,
        resource,
        subresource,
        namespace,
        name,
        query,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(method: Method, path: &str, query: &str) -> ResourceRequest {
        match route(&method, path, query).unwrap() {
            Route::Resource(r) => *r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn documents() {
        let cases = [
            ("/version", Route::Version),
            ("/api", Route::CoreDiscovery),
            ("/apis/", Route::GroupDiscovery),
            (
                "/api/v1",
                Route::ResourceList {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            ("/apis/apps", Route::Group("apps".into())),
            (
                "/apis/apps/v1",
                Route::ResourceList {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            ("/openapi/v3", Route::OpenApiIndex),
            (
                "/openapi/v3/apis/batch/v1",
                Route::OpenApiDocument {
                    group: "batch".into(),
                    version: "v1".into(),
                },
            ),
            (
                "/openapi/v3/api/v1",
                Route::OpenApiDocument {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            ("/readyz", Route::Health),
        ];
        for (path, want) in cases {
            assert_eq!(
                route(&Method::GET, path, "timeout=32s").unwrap(),
                want,
                "{path}"
            );
        }
        assert_eq!(route(&Method::POST, "/api", "").unwrap_err().code, 405);
        assert_eq!(route(&Method::GET, "/nope", "").unwrap_err().code, 404);
        assert_eq!(
            route(&Method::GET, "/openapi/v2", "timeout=32s").unwrap(),
            Route::OpenApiV2
        );
        assert_eq!(
            route(&Method::GET, "/openapi/v1", "").unwrap_err().code,
            404
        );
    }

    /// (method, path, query) -> (verb, plural, namespace, name, subresource)
    type PathCase = (
        Method,
        &'static str,
        &'static str,
        Verb,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn resource_paths() {
        // (method, path, query) -> (verb, plural, namespace, name, subresource)
        let cases: &[PathCase] = &[
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "limit=500",
                Verb::List,
                "pods",
                Some("default"),
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/pods",
                "",
                Verb::List,
                "pods",
                None,
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                "watch=true&resourceVersion=5",
                Verb::Watch,
                "pods",
                Some("default"),
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                "",
                Verb::Watch,
                "pods",
                Some("default"),
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/sleep",
                "",
                Verb::Get,
                "pods",
                Some("default"),
                Some("sleep"),
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/sleep/log",
                "container=istio-proxy&follow=true",
                Verb::Get,
                "pods",
                Some("default"),
                Some("sleep"),
                Some("log"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/sleep/exec",
                "command=echo&command=hi",
                Verb::Create,
                "pods",
                Some("default"),
                Some("sleep"),
                Some("exec"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/pods/sleep/status",
                "",
                Verb::Update,
                "pods",
                Some("default"),
                Some("sleep"),
                Some("status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces",
                "fieldManager=kubectl-create&fieldValidation=Strict",
                Verb::Create,
                "namespaces",
                None,
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default",
                "",
                Verb::Get,
                "namespaces",
                None,
                Some("default"),
                None,
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/default",
                "fieldManager=kubectl-label",
                Verb::Patch,
                "namespaces",
                None,
                Some("default"),
                None,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/x/finalize",
                "",
                Verb::Update,
                "namespaces",
                None,
                Some("x"),
                Some("finalize"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/x/status",
                "",
                Verb::Get,
                "namespaces",
                None,
                Some("x"),
                Some("status"),
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/default/deployments/sleep",
                "",
                Verb::Delete,
                "deployments",
                Some("default"),
                Some("sleep"),
                None,
            ),
            (
                Method::DELETE,
                "/apis/batch/v1/namespaces/default/jobs",
                "labelSelector=a%3Db",
                Verb::DeleteCollection,
                "jobs",
                Some("default"),
                None,
                None,
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/default/deployments/sleep/scale",
                "",
                Verb::Patch,
                "deployments",
                Some("default"),
                Some("sleep"),
                Some("scale"),
            ),
            (
                Method::GET,
                "/apis/events.k8s.io/v1/events",
                "",
                Verb::List,
                "events",
                None,
                None,
                None,
            ),
        ];
        for (method, path, query, verb, plural, ns, name, sub) in cases {
            let r = res(method.clone(), path, query);
            assert_eq!(r.verb, *verb, "{path}");
            assert_eq!(r.resource.plural, *plural, "{path}");
            assert_eq!(r.namespace.as_deref(), *ns, "{path}");
            assert_eq!(r.name.as_deref(), *name, "{path}");
            assert_eq!(r.subresource.map(|s| s.name), *sub, "{path}");
        }
    }

    #[test]
    fn query_options() {
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            "allowWatchBookmarks=true&fieldSelector=metadata.name%3Dsleep&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=438&watch=true",
        );
        assert_eq!(r.verb, Verb::Watch);
        assert!(r.query.allow_watch_bookmarks);
        assert_eq!(r.query.send_initial_events, Some(true));
        assert_eq!(
            r.query.field_selector.as_deref(),
            Some("metadata.name=sleep")
        );
        assert_eq!(
            r.query.resource_version_match.as_deref(),
            Some("NotOlderThan")
        );
        assert_eq!(r.query.timeout_seconds, Some(438));
        // A watch on one object becomes a field selector on its name.
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/pods/sleep",
            "watch=1&resourceVersion=0",
        );
        assert_eq!(r.verb, Verb::Watch);
        assert_eq!(r.name, None);
        assert_eq!(
            r.query.field_selector.as_deref(),
            Some("metadata.name=sleep")
        );
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/pods/sleep/exec",
            "command=echo&command=hi&container=sleep&stdout=true",
        );
        assert_eq!(
            r.query.other,
            vec![
                ("command".into(), "echo".into()),
                ("command".into(), "hi".into()),
                ("container".into(), "sleep".into()),
                ("stdout".into(), "true".into())
            ]
        );
        assert_eq!(parse_query("limit=x").unwrap_err().code, 400);
        assert_eq!(parse_query("watch=maybe").unwrap_err().code, 400);
        assert_eq!(parse_query("fieldValidation=Loose").unwrap_err().code, 400);
        assert_eq!(
            parse_query("dryRun=All&dryRun=All")
                .unwrap()
                .0
                .dry_run
                .len(),
            2
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(Method, &str, u16)] = &[
            (Method::GET, "/api/v1/namespaces/default/widgets", 404),
            (
                Method::GET,
                "/apis/apps/v2/namespaces/default/deployments",
                404,
            ),
            (Method::GET, "/api/v1/pods/sleep", 404),
            (Method::POST, "/api/v1/pods", 405),
            (Method::GET, "/api/v1/namespaces/default/nodes", 404),
            (Method::DELETE, "/api/v1/namespaces", 405),
            (Method::POST, "/api/v1/namespaces/default/pods/sleep", 405),
            (Method::PUT, "/api/v1/namespaces/default/pods", 405),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/sleep/attach",
                404,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/pods/sleep/log",
                405,
            ),
            (Method::GET, "/api/v1/namespaces/default/pods/a/b/c", 404),
        ];
        for (method, path, code) in cases {
            let got = route(method, path, "").map(|_| ()).unwrap_err();
            assert_eq!(got.code, *code, "{method} {path}: {got:?}");
        }
        let e = route(&Method::DELETE, "/api/v1/namespaces", "").unwrap_err();
        assert_eq!(
            e.message,
            "deletecollection is not supported on resources of kind \"namespaces\""
        );
    }
}
