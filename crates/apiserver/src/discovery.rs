//! Discovery documents built from the catalogue: aggregated discovery v2 for `/api` and
//! `/apis`, the legacy `APIVersions`, `APIGroupList`, `APIGroup` and `APIResourceList`
//! forms, and `/version`.

use serde_json::{Value, json};

use crate::catalogue::{self, GROUPS, Gvk, Resource, Scope};

/// Media type of an aggregated discovery answer.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The Kubernetes minor version podrun speaks.
pub const KUBERNETES_MINOR: &str = "37";

fn response_kind(gvk: &Gvk) -> Value {
    json!({"group": gvk.group, "version": gvk.version, "kind": gvk.kind})
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": response_kind(&r.gvk),
        "scope": match r.scope { Scope::Namespaced => "Namespaced", Scope::Cluster => "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = r
            .subresources
            .iter()
            .map(|s| {
                json!({"subresource": s.name, "responseKind": response_kind(&s.kind), "verbs": s.verbs})
            })
            .collect();
    }
    v
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = catalogue::versions(group)
        .into_iter()
        .map(|version| {
            json!({
                "version": version,
                "resources": catalogue::in_group_version(group, version)
                    .map(aggregated_resource)
                    .collect::<Vec<_>>(),
                "freshness": "Current",
            })
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `GET /api` in aggregated form: the core group.
pub fn aggregated_core() -> Value {
    aggregated_list(vec![aggregated_group("")])
}

/// `GET /apis` in aggregated form: every named group in priority order.
pub fn aggregated_groups() -> Value {
    aggregated_list(GROUPS.iter().map(|g| aggregated_group(g)).collect())
}

/// `GET /api` in legacy form. `server_address` is `host:port` as clients reach the server.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = catalogue::versions(group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0].clone()})
}

/// `GET /apis` in legacy form.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|g| api_group(g)).collect::<Vec<_>>(),
    })
}

/// `GET /apis/{group}`: the group with its versions, or `None` for an unknown group.
pub fn api_group_document(group: &str) -> Option<Value> {
    if !GROUPS.contains(&group) {
        return None;
    }
    let mut g = api_group(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`, or `None` when nothing is served there.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in catalogue::in_group_version(group, version) {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.gvk.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        resources.push(v);
        for s in r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.kind.kind,
                "verbs": s.verbs,
            });
            if s.kind.group != r.gvk.group || s.kind.version != r.gvk.version {
                sv["group"] = json!(s.kind.group);
                sv["version"] = json!(s.kind.version);
            }
            resources.push(sv);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `GET /version`. `build` names podrun's own version.
pub fn version_info(build: &str) -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "emulationMajor": "1",
        "emulationMinor": KUBERNETES_MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-podrun.{build}"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, goarch()),
    })
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_core_lists_pods_with_their_subresources() {
        let doc = aggregated_core();
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let subs: Vec<&str> = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subresource"].as_str().unwrap())
            .collect();
        assert_eq!(subs, ["exec", "log", "status"]);
        let ns = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(ns["scope"], "Cluster");
        assert!(ns.get("categories").is_none());
    }

    #[test]
    fn aggregated_groups_in_priority_order() {
        let doc = aggregated_groups();
        let names: Vec<&str> = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, GROUPS);
        let apps = &doc["items"][0]["versions"][0]["resources"];
        let deploy = apps
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(
            deploy["subresources"][0]["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }

    #[test]
    fn legacy_resource_lists() {
        let core = api_resource_list("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods/log"), "{names:?}");
        assert!(names.contains(&"namespaces"), "{names:?}");
        let apps = api_resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(api_resource_list("apps", "v2").is_none());
        assert!(api_resource_list("nope", "v1").is_none());
        let groups = api_group_list();
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert_eq!(api_group_document("batch").unwrap()["kind"], "APIGroup");
        assert!(api_group_document("nope").is_none());
    }

    #[test]
    fn aggregated_documents_snapshot() {
        insta::assert_json_snapshot!("api", aggregated_core());
        insta::assert_json_snapshot!("apis", aggregated_groups());
    }

    #[test]
    fn version_is_1_37() {
        let v = version_info("0.1.0");
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "37");
        assert_eq!(v["gitVersion"], "v1.37.0-podrun.0.1.0");
    }
}
