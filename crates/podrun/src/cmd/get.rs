//! `podrun get pods|jobs|services [NAME] [-o wide|yaml|json|name|custom-columns=…]`:
//! what `kubectl get` prints, read from the state directory.

use std::io::Write;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use podrun_lifecycle::print::{human_duration, pod_row};
use podrun_node::objects::{ObjectKey, Resource, Store};
use serde::Serialize;
use serde_json::Value;

use crate::Global;

/// Arguments of `podrun get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource type: pods (po, pod), jobs (job), services (svc, service).
    pub resource: String,
    /// Object name; all objects when omitted.
    pub name: Option<String>,
    /// Output format: wide, yaml, json, name, custom-columns=SPEC.
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let store = Store::open(&global.state_dir())?;
    match args.resource.as_str() {
        "pods" | "pod" | "po" => show::<Pod>(&store, Resource::PODS, "pods", "pod", &args),
        "jobs" | "job" | "jobs.batch" | "job.batch" => {
            show::<Job>(&store, Resource::JOBS, "jobs.batch", "job.batch", &args)
        }
        "services" | "service" | "svc" => {
            show::<Service>(&store, Resource::SERVICES, "services", "service", &args)
        }
        other => {
            eprintln!("error: the server doesn't have a resource type \"{other}\"");
            Ok(1)
        }
    }
}

trait Printable: podrun_node::objects::StoredObject + Serialize {
    fn columns(wide: bool) -> Vec<&'static str>;
    fn cells(&self, now: Timestamp, wide: bool) -> Vec<String>;
}

impl Printable for Pod {
    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
        if wide {
            c.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
        }
        c
    }

    fn cells(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let row = pod_row(self, now);
        let mut cells = vec![row.name, row.ready, row.status, row.restarts, row.age];
        if wide {
            let status = self.status.as_ref();
            cells.push(or_none(status.and_then(|s| s.pod_ip.clone())));
            cells.push(or_none(
                self.spec.as_ref().and_then(|s| s.node_name.clone()),
            ));
            cells.push(or_none(status.and_then(|s| s.nominated_node_name.clone())));
            let gates =
                self.spec
                    .as_ref()
                    .and_then(|s| s.readiness_gates.as_ref())
                    .filter(|g| !g.is_empty())
                    .map(|g| {
                        let conditions = status.and_then(|s| s.conditions.as_ref());
                        let ready =
                            g.iter()
                                .filter(|gate| {
                                    conditions.into_iter().flatten().any(|c| {
                                        c.type_ == gate.condition_type && c.status == "True"
                                    })
                                })
                                .count();
                        format!("{ready}/{}", g.len())
                    });
            cells.push(or_none(gates));
        }
        cells
    }
}

impl Printable for Job {
    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"];
        if wide {
            c.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
        }
        c
    }

    fn cells(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let status = self.status.clone().unwrap_or_default();
        let spec = self.spec.clone().unwrap_or_default();
        let has = |t: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == t && c.status == "True")
        };
        let state = if has("Failed") {
            "Failed"
        } else if has("Complete") {
            "Complete"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else if spec.suspend == Some(true) {
            "Suspended"
        } else if self.metadata.deletion_timestamp.is_some() {
            "Terminating"
        } else {
            "Running"
        };
        let succeeded = status.succeeded.unwrap_or(0);
        let completions = match (spec.completions, spec.parallelism) {
            (Some(c), _) => format!("{succeeded}/{c}"),
            (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        };
        let duration = status.start_time.as_ref().map_or(String::new(), |start| {
            let end = status.completion_time.as_ref().map_or(now, |t| t.0);
            human_duration(end.duration_since(start.0))
        });
        let mut cells = vec![
            self.metadata.name.clone().unwrap_or_default(),
            state.into(),
            completions,
            duration,
            age(&self.metadata, now),
        ];
        if wide {
            let containers = &spec.template.spec.clone().unwrap_or_default().containers;
            cells.push(join(containers.iter().map(|c| c.name.clone())));
            cells.push(join(
                containers
                    .iter()
                    .map(|c| c.image.clone().unwrap_or_default()),
            ));
            let selector = self
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("batch.kubernetes.io/controller-uid"))
                .map(|uid| format!("batch.kubernetes.io/controller-uid={uid}"));
            cells.push(or_none(selector));
        }
        cells
    }
}

impl Printable for Service {
    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ];
        if wide {
            c.push("SELECTOR");
        }
        c
    }

    fn cells(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
            .collect::<Vec<_>>()
            .join(",");
        let mut cells = vec![
            self.metadata.name.clone().unwrap_or_default(),
            spec.type_.unwrap_or_else(|| "ClusterIP".into()),
            or_none(spec.cluster_ip),
            "<none>".into(),
            if ports.is_empty() {
                "<none>".into()
            } else {
                ports
            },
            age(&self.metadata, now),
        ];
        if wide {
            let selector = spec.selector.map(|s| {
                s.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            cells.push(or_none(selector));
        }
        cells
    }
}

fn join(it: impl Iterator<Item = String>) -> String {
    it.collect::<Vec<_>>().join(",")
}

fn or_none(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

fn age(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    now: Timestamp,
) -> String {
    meta.creation_timestamp
        .as_ref()
        .map_or("<unknown>".into(), |t| {
            human_duration(now.duration_since(t.0))
        })
}

fn show<T: Printable>(
    store: &Store,
    resource: Resource,
    plural: &str,
    singular: &str,
    args: &Args,
) -> anyhow::Result<u8> {
    let objects: Vec<T> = match &args.name {
        Some(name) => match store.get::<T>(resource, &ObjectKey::new(&args.namespace, name))? {
            Some(o) => vec![o],
            None => {
                eprintln!("Error from server (NotFound): {plural} \"{name}\" not found");
                return Ok(1);
            }
        },
        None => {
            let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
            store.list(resource, ns)?
        }
    };
    let now = podrun_node::now();
    let mut out = std::io::stdout().lock();
    let output = args.output.as_deref().unwrap_or("");
    match output {
        "" | "wide" => {
            if objects.is_empty() {
                if args.all_namespaces {
                    eprintln!("No resources found");
                } else {
                    eprintln!("No resources found in {} namespace.", args.namespace);
                }
                return Ok(0);
            }
            let wide = output == "wide";
            let mut rows = Vec::new();
            let mut header: Vec<String> = T::columns(wide).into_iter().map(String::from).collect();
            if args.all_namespaces {
                header.insert(0, "NAMESPACE".into());
            }
            rows.push(header);
            for o in &objects {
                let mut cells = o.cells(now, wide);
                if args.all_namespaces {
                    cells.insert(0, o.meta().namespace.clone().unwrap_or_default());
                }
                rows.push(cells);
            }
            out.write_all(crate::table::render(&rows).as_bytes())?;
        }
        "name" => {
            for o in &objects {
                writeln!(
                    out,
                    "{singular}/{}",
                    o.meta().name.clone().unwrap_or_default()
                )?;
            }
        }
        "json" | "yaml" => {
            let value = if args.name.is_some() {
                serde_json::to_value(&objects[0])?
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "items": objects,
                    "kind": "List",
                    "metadata": { "resourceVersion": "" },
                })
            };
            if output == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                out.write_all(serde_saphyr::to_string(&value)?.as_bytes())?;
            }
        }
        other => {
            let Some(spec) = other.strip_prefix("custom-columns=") else {
                eprintln!(
                    "error: unable to match a printer suitable for the output format \"{other}\", \
                     allowed formats are: custom-columns,json,name,wide,yaml"
                );
                return Ok(1);
            };
            let columns = match parse_custom_columns(spec) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(1);
                }
            };
            let mut rows = vec![columns.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>()];
            for o in &objects {
                let value = serde_json::to_value(o)?;
                rows.push(
                    columns
                        .iter()
                        .map(|(_, path)| {
                            let found = select(&value, path);
                            if found.is_empty() {
                                "<none>".into()
                            } else {
                                found.iter().map(scalar).collect::<Vec<_>>().join(",")
                            }
                        })
                        .collect(),
                );
            }
            out.write_all(crate::table::render(&rows).as_bytes())?;
        }
    }
    Ok(0)
}

/// One step of the JSONPath subset kubectl's custom columns use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    All,
    Index(usize),
}

fn parse_custom_columns(spec: &str) -> Result<Vec<(String, Vec<Step>)>, String> {
    spec.split(',')
        .map(|col| {
            let (header, path) = col.split_once(':').ok_or_else(|| {
                format!("unexpected custom-columns spec: {col}, expected <header>:<json-path-expr>")
            })?;
            Ok((header.to_string(), parse_path(path)?))
        })
        .collect()
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (inner, after) = r
                .split_once(']')
                .ok_or_else(|| format!("unterminated array index in {path}"))?;
            steps.push(if inner == "*" {
                Step::All
            } else {
                Step::Index(
                    inner
                        .parse()
                        .map_err(|_| format!("invalid array index {inner}"))?,
                )
            });
            rest = after.strip_prefix('.').unwrap_or(after);
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_string()));
            rest = rest[end..].strip_prefix('.').unwrap_or(&rest[end..]);
        }
    }
    Ok(steps)
}

fn select<'a>(value: &'a Value, path: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in path {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match (step, v) {
                    (Step::Field(f), Value::Object(m)) => m.get(f).into_iter().collect(),
                    (Step::All, Value::Array(a)) => a.iter().collect(),
                    (Step::Index(i), Value::Array(a)) => a.get(*i).into_iter().collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    current
}

fn scalar(v: &&Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_columns_select_names_of_every_init_container() {
        let pod = serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy"}],
                     "containers": [{"name": "sleep"}]}
        });
        let cols = parse_custom_columns(
            "NAME:.metadata.name,INIT:.spec.initContainers[*].name,FIRST:.spec.containers[0].name",
        )
        .unwrap();
        let cells: Vec<String> = cols
            .iter()
            .map(|(_, p)| {
                select(&pod, p)
                    .iter()
                    .map(scalar)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(cells, ["p", "istio-init,istio-proxy", "sleep"]);
    }

    #[test]
    fn a_custom_column_without_a_path_is_an_error() {
        assert!(parse_custom_columns("NAME").is_err());
    }
}
