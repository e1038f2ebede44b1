//! Table tests: each manifest is admitted (defaulted + validated) and the
//! full API-server message is compared.

use podrun_model::{Object, admit_job, admit_pod, admit_service, parse_manifests};

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn pod_result(spec_yaml: &str) -> Result<(), String> {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{}",
        indent(spec_yaml)
    );
    let objs = parse_manifests(&text, "t.yaml").map_err(|e| format!("parse: {e}"))?;
    let Some(Object::Pod(pod)) = objs.into_iter().next() else {
        panic!("not a pod")
    };
    admit_pod(*pod).map(|_| ()).map_err(|e| e.to_string())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn assert_pod(spec_yaml: &str, want: &str) {
    match pod_result(spec_yaml) {
        Ok(()) => panic!("expected error {want:?}, pod was admitted:\n{spec_yaml}"),
        Err(got) => assert_eq!(
            got,
            format!("Pod \"p\" is invalid: {want}"),
            "spec:\n{spec_yaml}"
        ),
    }
}

fn assert_pod_ok(spec_yaml: &str) {
    if let Err(e) = pod_result(spec_yaml) {
        panic!("expected admission, got {e}\n{spec_yaml}");
    }
}

#[test]
fn valid_pods_are_admitted() {
    assert_pod_ok("containers:\n- name: a\n  image: busybox");
    // A sidecar with probes, lifecycle and sleep 0 (allowed since 1.34).
    assert_pod_ok(
        "initContainers:
- name: sc
  image: busybox
  restartPolicy: Always
  startupProbe: {exec: {command: ['true']}}
  readinessProbe: {tcpSocket: {port: 80}}
  livenessProbe: {httpGet: {port: http}}
  lifecycle: {preStop: {sleep: {seconds: 0}}, postStart: {exec: {command: [x]}}}
- name: init
  image: busybox
containers:
- name: main
  image: busybox
  ports: [{containerPort: 80, name: http}]",
    );
    // A zero successThreshold is defaulted to 1 before validation.
    assert_pod_ok(
        "containers:\n- name: a\n  image: b\n  livenessProbe: {exec: {command: [x]}, successThreshold: 0}",
    );
    // A readiness probe may use any success threshold.
    assert_pod_ok(
        "containers:\n- name: a\n  image: b\n  readinessProbe: {exec: {command: [x]}, successThreshold: 3}",
    );
    assert_pod_ok("restartPolicy: Never\ncontainers:\n- name: a\n  image: b");
}

/// A container with `restartPolicy: Never` and the given rules, as YAML.
fn ruled(rules: &str) -> String {
    format!(
        "containers:\n- {{name: a, image: b, restartPolicy: Never, restartPolicyRules: {rules}}}"
    )
}

#[test]
fn container_restart_policy_is_allowed_on_regular_and_init_containers() {
    for p in ["Always", "OnFailure", "Never"] {
        assert_pod_ok(&format!(
            "containers:\n- {{name: a, image: b, restartPolicy: {p}}}"
        ));
        assert_pod_ok(&format!(
            "restartPolicy: Never\ninitContainers:\n- {{name: i, image: b, restartPolicy: {p}}}\ncontainers:\n- {{name: a, image: b}}"
        ));
    }
    // Restart only on exit code 42.
    assert_pod_ok(&ruled(
        "[{action: Restart, exitCodes: {operator: In, values: [42]}}]",
    ));
    // Exit 0 in `In`, and an empty value list, are legal.
    assert_pod_ok(&ruled(
        "[{action: Restart, exitCodes: {operator: In, values: [0]}}]",
    ));
    assert_pod_ok(&ruled(
        "[{action: RestartAllContainers, exitCodes: {operator: NotIn, values: []}}]",
    ));
}

#[test]
fn container_restart_policy_unsupported_value() {
    assert_pod(
        "containers:\n- {name: a, image: b, restartPolicy: Sometimes}",
        "spec.containers[0].restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
    );
    assert_pod(
        "initContainers:\n- {name: i, image: b, restartPolicy: Sometimes}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
    );
}

#[test]
fn restart_rules_require_a_container_restart_policy() {
    assert_pod(
        "containers:\n- {name: a, image: b, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [1]}}]}",
        "spec.containers[0].restartPolicy: Required value: must specify restartPolicy when restart rules are used",
    );
    assert_pod(
        "initContainers:\n- {name: i, image: b, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [1]}}]}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].restartPolicy: Required value: must specify restartPolicy when restart rules are used",
    );
}

#[test]
fn restart_rules_at_most_20() {
    let rule = "{action: Restart, exitCodes: {operator: In, values: [1]}}";
    let twenty = vec![rule; 20].join(", ");
    assert_pod_ok(&ruled(&format!("[{twenty}]")));
    let many = vec![rule; 21].join(", ");
    assert_pod(
        &ruled(&format!("[{many}]")),
        "spec.containers[0].restartPolicyRules: Too many: 21: must have at most 20 items",
    );
}

#[test]
fn restart_rule_action_unsupported_value() {
    assert_pod(
        &ruled("[{action: DoNotRestart, exitCodes: {operator: In, values: [3]}}]"),
        "spec.containers[0].restartPolicyRules[0].action: Unsupported value: \"DoNotRestart\": supported values: \"Restart\", \"RestartAllContainers\"",
    );
}

#[test]
fn restart_rule_exit_codes_required() {
    assert_pod(
        &ruled("[{action: Restart}]"),
        "spec.containers[0].restartPolicyRules[0].exitCodes: Required value: must be specified",
    );
}

#[test]
fn restart_rule_operator_unsupported_value() {
    assert_pod(
        &ruled("[{action: Restart, exitCodes: {operator: Equals, values: [3]}}]"),
        "spec.containers[0].restartPolicyRules[0].exitCodes.operator: Unsupported value: \"Equals\": supported values: \"In\", \"NotIn\"",
    );
    assert_pod(
        &ruled("[{action: Restart, exitCodes: {values: [3]}}]"),
        "spec.containers[0].restartPolicyRules[0].exitCodes.operator: Unsupported value: \"\": supported values: \"In\", \"NotIn\"",
    );
}

#[test]
fn restart_rule_exit_code_values_at_most_255() {
    let ok: Vec<String> = (0..255).map(|v| v.to_string()).collect();
    assert_pod_ok(&ruled(&format!(
        "[{{action: Restart, exitCodes: {{operator: In, values: [{}]}}}}]",
        ok.join(", ")
    )));
    let many: Vec<String> = (0..256).map(|v| v.to_string()).collect();
    assert_pod(
        &ruled(&format!(
            "[{{action: Restart, exitCodes: {{operator: In, values: [{}]}}}}]",
            many.join(", ")
        )),
        "spec.containers[0].restartPolicyRules[0].exitCodes.values: Too many: 256: must have at most 255 items",
    );
}

#[test]
fn sidecars_and_init_containers_may_carry_both_actions() {
    for action in ["Restart", "RestartAllContainers"] {
        assert_pod_ok(&format!(
            "initContainers:\n- {{name: s, image: b, restartPolicy: Always, restartPolicyRules: [{{action: {action}, exitCodes: {{operator: In, values: [1]}}}}]}}\n- {{name: i, image: b, restartPolicy: Never, restartPolicyRules: [{{action: {action}, exitCodes: {{operator: In, values: [1]}}}}]}}\ncontainers:\n- {{name: a, image: b}}"
        ));
    }
}

#[test]
fn init_containers_with_own_policy_still_take_no_probes() {
    assert_pod(
        "initContainers:\n- {name: i, image: b, restartPolicy: OnFailure, startupProbe: {exec: {command: [x]}}}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
    );
}

#[test]
fn several_restart_rule_errors_in_upstream_order() {
    assert_pod(
        "containers:\n- {name: a, image: b, restartPolicy: Bad, restartPolicyRules: [{action: X}, {action: Restart, exitCodes: {operator: Z}}]}",
        "[spec.containers[0].restartPolicy: Unsupported value: \"Bad\": supported values: \"Always\", \"Never\", \"OnFailure\", spec.containers[0].restartPolicyRules[0].action: Unsupported value: \"X\": supported values: \"Restart\", \"RestartAllContainers\", spec.containers[0].restartPolicyRules[0].exitCodes: Required value: must be specified, spec.containers[0].restartPolicyRules[1].exitCodes.operator: Unsupported value: \"Z\": supported values: \"In\", \"NotIn\"]",
    );
}

#[test]
fn file_key_ref_rules() {
    let vols = "volumes: [{name: cfg, emptyDir: {}}, {name: host, hostPath: {path: /tmp}}]";
    assert_pod_ok(&format!(
        "{vols}\ncontainers:\n- {{name: a, image: b, env: [{{name: A, valueFrom: {{fileKeyRef: {{volumeName: cfg, path: env/a.env, key: A}}}}}}]}}"
    ));
    assert_pod(
        &format!(
            "{vols}\ncontainers:\n- {{name: a, image: b, env: [{{name: A, valueFrom: {{fileKeyRef: {{volumeName: nope, path: a.env, key: A}}}}}}]}}"
        ),
        "spec.containers[0].env[0].valueFrom.fileKeyRef.volumeName: Not found: \"nope\"",
    );
    assert_pod(
        &format!(
            "{vols}\ncontainers:\n- {{name: a, image: b, env: [{{name: A, valueFrom: {{fileKeyRef: {{volumeName: host, path: a.env, key: A}}}}}}]}}"
        ),
        "spec.containers[0].env[0].valueFrom.fileKeyRef.volumeName: Invalid value: \"host\": referenced volume must be of type emptyDir",
    );
    assert_pod(
        &format!(
            "{vols}\ncontainers:\n- {{name: a, image: b, env: [{{name: A, valueFrom: {{fileKeyRef: {{volumeName: cfg, path: ../a.env, key: ''}}}}}}]}}"
        ),
        "[spec.containers[0].env[0].valueFrom.fileKeyRef.path: Invalid value: \"../a.env\": must not contain '..', spec.containers[0].env[0].valueFrom.fileKeyRef.key: Required value]",
    );
}

#[test]
fn regular_init_containers_may_not_have_probes_or_lifecycle() {
    let f = "Forbidden: may not be set for init containers without restartPolicy=Always";
    for field in [
        "lifecycle",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
    ] {
        let value = if field == "lifecycle" {
            "{preStop: {exec: {command: [x]}}}"
        } else {
            "{exec: {command: [x]}}"
        };
        assert_pod(
            &format!(
                "initContainers:\n- {{name: i, image: b, {field}: {value}}}\ncontainers:\n- {{name: a, image: b}}"
            ),
            &format!("spec.initContainers[0].{field}: {f}"),
        );
    }
    // One error per field.
    assert_pod(
        "initContainers:\n- name: i\n  image: b\n  lifecycle: {postStart: {exec: {command: [x]}}}\n  startupProbe: {exec: {command: [x]}}\ncontainers:\n- {name: a, image: b}",
        &format!(
            "[spec.initContainers[0].lifecycle: {f}, spec.initContainers[0].startupProbe: {f}]"
        ),
    );
}

#[test]
fn probe_rules() {
    let c =
        |probe: &str, body: &str| format!("containers:\n- name: a\n  image: b\n  {probe}: {body}");
    assert_pod(
        &c("livenessProbe", "{periodSeconds: 5}"),
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
    );
    assert_pod(
        &c(
            "readinessProbe",
            "{exec: {command: [x]}, tcpSocket: {port: 80}}",
        ),
        "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
    );
    assert_pod(
        &c(
            "readinessProbe",
            "{httpGet: {port: 80}, grpc: {port: 9000}}",
        ),
        "spec.containers[0].readinessProbe.grpc: Forbidden: may not specify more than 1 handler type",
    );
    assert_pod(
        &c("startupProbe", "{exec: {command: []}}"),
        "spec.containers[0].startupProbe.exec.command: Required value",
    );
    assert_pod(
        &c("startupProbe", "{exec: {}}"),
        "spec.containers[0].startupProbe.exec.command: Required value",
    );
    assert_pod(
        &c(
            "livenessProbe",
            "{exec: {command: [x]}, initialDelaySeconds: -1}",
        ),
        "spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
    );
    assert_pod(
        &c(
            "readinessProbe",
            "{exec: {command: [x]}, timeoutSeconds: -2, failureThreshold: -3}",
        ),
        "[spec.containers[0].readinessProbe.timeoutSeconds: Invalid value: -2: must be greater than or equal to 0, spec.containers[0].readinessProbe.failureThreshold: Invalid value: -3: must be greater than or equal to 0]",
    );
    assert_pod(
        &c(
            "livenessProbe",
            "{exec: {command: [x]}, successThreshold: 2}",
        ),
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
    );
    assert_pod(
        &c(
            "startupProbe",
            "{exec: {command: [x]}, successThreshold: 2}",
        ),
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
    );
    assert_pod(
        &c(
            "livenessProbe",
            "{exec: {command: [x]}, successThreshold: -1}",
        ),
        "[spec.containers[0].livenessProbe.successThreshold: Invalid value: -1: must be greater than or equal to 0, spec.containers[0].livenessProbe.successThreshold: Invalid value: -1: must be 1]",
    );
    assert_pod(
        &c(
            "livenessProbe",
            "{exec: {command: [x]}, terminationGracePeriodSeconds: 0}",
        ),
        "spec.containers[0].livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
    );
    assert_pod(
        &c(
            "readinessProbe",
            "{exec: {command: [x]}, terminationGracePeriodSeconds: 5}",
        ),
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes",
    );
    assert_pod(
        &c("livenessProbe", "{httpGet: {port: 0}}"),
        "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
    );
    assert_pod(
        &c("livenessProbe", "{httpGet: {port: 80, scheme: FTP}}"),
        "spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
    );
    assert_pod(
        &c("livenessProbe", "{tcpSocket: {port: Http}}"),
        "spec.containers[0].livenessProbe.tcpSocket.port: Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    );
    // The same rules apply to sidecars, with the init container path.
    assert_pod(
        "initContainers:\n- {name: s, image: b, restartPolicy: Always, livenessProbe: {exec: {command: [x]}, successThreshold: 3}}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].livenessProbe.successThreshold: Invalid value: 3: must be 1",
    );
}

#[test]
fn lifecycle_rules() {
    let c = |lc: &str| format!("containers:\n- name: a\n  image: b\n  lifecycle: {lc}");
    assert_pod(
        &c("{preStop: {sleep: {seconds: 31}}}"),
        "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 31: must be non-negative and less than terminationGracePeriodSeconds (30)",
    );
    assert_pod(
        &c("{preStop: {sleep: {seconds: -1}}}"),
        "spec.containers[0].lifecycle.preStop.sleep: Invalid value: -1: must be non-negative and less than terminationGracePeriodSeconds (30)",
    );
    assert_pod_ok(&c("{preStop: {sleep: {seconds: 30}}}"));
    assert_pod(
        "terminationGracePeriodSeconds: 5\ncontainers:\n- name: a\n  image: b\n  lifecycle: {postStart: {sleep: {seconds: 6}}}",
        "spec.containers[0].lifecycle.postStart.sleep: Invalid value: 6: must be non-negative and less than terminationGracePeriodSeconds (5)",
    );
    assert_pod(
        &c("{postStart: {}}"),
        "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type",
    );
    assert_pod(
        &c("{preStop: {exec: {command: [x]}, sleep: {seconds: 1}}}"),
        "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type",
    );
    // A sidecar's lifecycle is validated the same way.
    assert_pod(
        "initContainers:\n- {name: s, image: b, restartPolicy: Always, lifecycle: {preStop: {exec: {command: []}}}}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].lifecycle.preStop.exec.command: Required value",
    );
}

#[test]
fn names_and_uniqueness() {
    assert_pod("containers: []", "spec.containers: Required value");
    assert_pod(
        "initContainers:\n- {name: i, image: b}",
        "spec.containers: Required value",
    );
    assert_pod(
        "containers:\n- {name: Web, image: b}",
        &format!("spec.containers[0].name: Invalid value: \"Web\": {LABEL_MSG}"),
    );
    let long = "a".repeat(64);
    assert_pod(
        &format!("containers:\n- {{name: {long}, image: b}}"),
        &format!(
            "spec.containers[0].name: Invalid value: \"{long}\": must be no more than 63 characters"
        ),
    );
    assert_pod(
        "containers:\n- {image: b}",
        "spec.containers[0].name: Required value",
    );
    assert_pod(
        "containers:\n- {name: a, image: b}\n- {name: a, image: b}",
        "spec.containers[1].name: Duplicate value: \"a\"",
    );
    assert_pod(
        "initContainers:\n- {name: a, image: b}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[0].name: Duplicate value: \"a\"",
    );
    assert_pod(
        "initContainers:\n- {name: i, image: b}\n- {name: i, image: b, restartPolicy: Always}\ncontainers:\n- {name: a, image: b}",
        "spec.initContainers[1].name: Duplicate value: \"i\"",
    );
    assert_pod(
        "containers:\n- {name: a}\n- {name: b}",
        "[spec.containers[0].image: Required value, spec.containers[1].image: Required value]",
    );
    assert_pod(
        "containers:\n- {name: a, image: ' b'}",
        "spec.containers[0].image: Invalid value: \" b\": must not have leading or trailing whitespace",
    );
}

#[test]
fn pod_name_and_namespace() {
    let admit = |meta: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n{}spec:\n  containers: [{{name: a, image: b}}]",
            indent(meta)
        );
        let Some(Object::Pod(p)) = parse_manifests(&text, "t").unwrap().into_iter().next() else {
            panic!()
        };
        admit_pod(*p).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(
        admit("name: Bad_Name").unwrap_err(),
        "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(
        admit("labels: {a: b}").unwrap_err(),
        "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required"
    );
    assert!(admit("name: web.v1\nnamespace: ns1").is_ok());
    assert_eq!(
        admit("name: p\nnamespace: a.b").unwrap_err(),
        "Pod \"p\" is invalid: metadata.namespace: Invalid value: \"a.b\": must not contain dots"
    );
    assert_eq!(
        admit("name: p\nlabels: {app: -x}").unwrap_err(),
        "Pod \"p\" is invalid: metadata.labels[app]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
}

#[test]
fn volumes_and_mounts() {
    assert_pod(
        "containers:\n- {name: a, image: b, volumeMounts: [{name: data, mountPath: /d}]}",
        "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
    );
    assert_pod(
        "volumes: [{name: data}]\ncontainers:\n- {name: a, image: b, volumeMounts: [{name: data, mountPath: /d}, {name: data, mountPath: /d}]}",
        "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
    );
    assert_pod(
        "volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\ncontainers:\n- {name: a, image: b}",
        "spec.volumes[1].name: Duplicate value: \"v\"",
    );
    assert_pod(
        "volumes: [{name: V, emptyDir: {}}]\ncontainers:\n- {name: a, image: b, volumeMounts: [{name: V, mountPath: /d}]}",
        &format!(
            "[spec.volumes[0].name: Invalid value: \"V\": {LABEL_MSG}, spec.containers[0].volumeMounts[0].name: Not found: \"V\"]"
        ),
    );
    assert_pod(
        "volumes: [{name: v, emptyDir: {}, hostPath: {path: /x}}]\ncontainers:\n- {name: a, image: b}",
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
    );
    // No source at all defaults to emptyDir.
    assert_pod_ok(
        "volumes: [{name: v}]\ncontainers:\n- {name: a, image: b, volumeMounts: [{name: v, mountPath: /v}]}",
    );
}

#[test]
fn pod_level_fields() {
    assert_pod(
        "restartPolicy: Sometimes\ncontainers:\n- {name: a, image: b}",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
    );
    assert_pod(
        "terminationGracePeriodSeconds: -1\ncontainers:\n- {name: a, image: b}",
        "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
    );
    assert_pod(
        "activeDeadlineSeconds: 0\ncontainers:\n- {name: a, image: b}",
        "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
    );
    assert_pod_ok("activeDeadlineSeconds: 1\ncontainers:\n- {name: a, image: b}");
    assert_pod(
        "containers:\n- {name: a, image: b, ports: [{containerPort: 70000}]}",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, ports: [{containerPort: 0}]}",
        "spec.containers[0].ports[0].containerPort: Required value",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, ports: [{containerPort: 80, hostPort: 70000}]}",
        "spec.containers[0].ports[0].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, ports: [{containerPort: 80, protocol: ICMP}]}",
        "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, ports: [{containerPort: 80, hostPort: 8080}]}\n- {name: c, image: b, ports: [{containerPort: 81, hostPort: 8080}]}",
        "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, imagePullPolicy: Sometimes}",
        "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
    );
}

#[test]
fn resource_rules() {
    assert_pod(
        "containers:\n- {name: a, image: b, resources: {limits: {cpu: 500m}, requests: {cpu: 1}}}",
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, resources: {limits: {memory: 1Gi}, requests: {memory: 2000Mi}}}",
        "spec.containers[0].resources.requests[memory]: Invalid value: \"2000Mi\": must be less than or equal to memory limit of 1Gi",
    );
    assert_pod_ok(
        "containers:\n- {name: a, image: b, resources: {limits: {memory: 1Gi}, requests: {memory: 1000Mi}}}",
    );
}

#[test]
fn env_rules() {
    assert_pod(
        "containers:\n- {name: a, image: b, env: [{name: 'A=B', value: x}]}",
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.phase}}}]}",
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
    );
    assert_pod(
        "containers:\n- {name: a, image: b, env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}",
        "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
    );
    assert_pod_ok(
        "containers:\n- {name: a, image: b, env: [{name: A, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['x']\"}}}]}",
    );
}

#[test]
fn several_errors_follow_upstream_order() {
    // containers before initContainers, before restartPolicy.
    assert_pod(
        "restartPolicy: Bad\ninitContainers:\n- {name: i, image: b, restartPolicy: Sometimes}\ncontainers:\n- {name: a, restartPolicy: Always}",
        "[spec.containers[0].image: Required value, spec.initContainers[0].restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\", spec.restartPolicy: Unsupported value: \"Bad\": supported values: \"Always\", \"OnFailure\", \"Never\"]",
    );
}

fn job_result(body: &str) -> Result<(), String> {
    let text = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n{}",
        indent(body)
    );
    let Some(Object::Job(j)) = parse_manifests(&text, "t").unwrap().into_iter().next() else {
        panic!()
    };
    admit_job(*j).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn job_rules() {
    assert!(
        job_result(
            "template:\n  spec:\n    restartPolicy: Never\n    containers: [{name: a, image: b}]"
        )
        .is_ok()
    );
    assert_eq!(
        job_result("template:\n  spec:\n    containers: [{name: a, image: b}]").unwrap_err(),
        "Job \"j\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    assert_eq!(
        job_result(
            "template:\n  spec:\n    restartPolicy: Always\n    containers: [{name: a, image: b}]"
        )
        .unwrap_err(),
        "Job \"j\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    assert_eq!(
        job_result("template:\n  spec:\n    restartPolicy: Never\n    containers: [{name: a, image: b, restartPolicy: Bad}]")
            .unwrap_err(),
        "Job \"j\" is invalid: spec.template.spec.containers[0].restartPolicy: Unsupported value: \"Bad\": supported values: \"Always\", \"Never\", \"OnFailure\""
    );
    // A container policy inside a Job template is legal (in-place restarts).
    job_result("template:\n  spec:\n    restartPolicy: Never\n    containers: [{name: a, image: b, restartPolicy: OnFailure}]")
        .unwrap();
    assert_eq!(
        job_result("backoffLimit: -1\ntemplate:\n  spec:\n    restartPolicy: OnFailure\n    containers: [{name: a}]").unwrap_err(),
        "Job \"j\" is invalid: [spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]"
    );
    assert_eq!(
        job_result("selector: {matchLabels: {x: z}}\nmanualSelector: true\ntemplate:\n  metadata: {labels: {a: b}}\n  spec:\n    restartPolicy: Never\n    containers: [{name: a, image: b}]").unwrap_err(),
        "Job \"j\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"b\"}: `selector` does not match template `labels`"
    );
}

#[test]
fn service_rules() {
    let svc = |body: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n{}",
            indent(body)
        );
        let Some(Object::Service(s)) = parse_manifests(&text, "t").unwrap().into_iter().next()
        else {
            panic!()
        };
        admit_service(*s).map_err(|e| e.to_string())
    };
    let ok = svc("selector: {app: web}\nports: [{port: 80}]").unwrap();
    let spec = ok.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(podrun_model::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    assert_eq!(
        svc("selector: {app: web}").unwrap_err(),
        "Service \"web\" is invalid: spec.ports: Required value"
    );
    assert_eq!(
        svc("ports: [{port: 80}, {port: 81}]").unwrap_err(),
        "Service \"web\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]"
    );
    assert_eq!(
        svc("ports: [{port: 0}]").unwrap_err(),
        "Service \"web\" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]"
    );
    assert_eq!(
        svc("type: Magic\nports: [{port: 80}]").unwrap_err(),
        "Service \"web\" is invalid: spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
    );
}

#[test]
fn created_pods_get_generation_1_whatever_the_client_sent() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  generation: 7\nspec:\n  containers:\n  - {name: a, image: b}\n";
    let objs = parse_manifests(text, "t.yaml").unwrap();
    let Some(Object::Pod(pod)) = objs.into_iter().next() else {
        panic!("not a pod")
    };
    assert_eq!(admit_pod(*pod).unwrap().metadata.generation, Some(1));
}
