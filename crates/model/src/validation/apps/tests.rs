use super::*;

fn deployment(yaml: &str) -> Deployment {
    match crate::parse_manifests(yaml, "test").unwrap().remove(0) {
        crate::Object::Deployment(d) => *d,
        other => panic!("not a Deployment: {other:?}"),
    }
}

const BASE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: busybox, command: [sleep, "1"]}]
"#;

/// The message for `BASE` with `spec` lines replaced or added.
fn message(edit: impl FnOnce(&mut Deployment)) -> String {
    let mut d = deployment(BASE);
    edit(&mut d);
    match admit_deployment(d) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_valid_deployment_is_admitted_unchanged() {
    let d = deployment(BASE);
    assert_eq!(admit_deployment(d.clone()).unwrap(), d);
}

#[test]
fn the_issues_deployments_are_refused_with_the_api_servers_messages() {
    let spec = |d: &mut Deployment| d.spec.clone();
    let _ = spec;
    assert_eq!(
        message(|d| d.spec.replicas = Some(-1)),
        r#"Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#
    );
    assert_eq!(
        message(|d| d.spec.selector = Default::default()),
        r#"Deployment "web" is invalid: spec.selector: Required value"#
    );
    assert_eq!(
        message(|d| {
            d.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
        }),
        r#"Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`"#
    );
    assert_eq!(
        message(|d| {
            let t = d.spec.template.spec.as_mut().unwrap();
            t.restart_policy = Some("Never".into());
        }),
        r#"Deployment "web" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#
    );
    assert_eq!(
        message(|d| {
            d.spec.strategy = Some(DeploymentStrategy {
                type_: Some("Blue".into()),
                rolling_update: None,
            });
        }),
        r#"Deployment "web" is invalid: spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"Blue", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate""#
    );
    assert_eq!(
        message(|d| {
            let s = &mut d.spec;
            s.min_ready_seconds = Some(-1);
            s.revision_history_limit = Some(-2);
            s.progress_deadline_seconds = Some(-3);
        }),
        "Deployment \"web\" is invalid: [spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0, \
         spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0, \
         spec.progressDeadlineSeconds: Invalid value: -3: must be greater than or equal to 0, \
         spec.progressDeadlineSeconds: Invalid value: -3: must be greater than minReadySeconds]"
    );
    assert_eq!(
        message(|d| {
            d.spec.strategy = Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::String("0%".into())),
                }),
            });
        }),
        r#"Deployment "web" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"#
    );
}

#[test]
fn a_replica_set_gets_the_same_template_rules() {
    let rs = match crate::parse_manifests(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: -4
  selector: {matchLabels: {}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      restartPolicy: OnFailure
      containers: [{name: c, image: busybox, command: [sleep, "1"]}]
"#,
        "test",
    )
    .unwrap()
    .remove(0)
    {
        crate::Object::ReplicaSet(rs) => *rs,
        other => panic!("{other:?}"),
    };
    let e = admit_replica_set(rs).unwrap_err().to_string();
    assert_eq!(
        e,
        "ReplicaSet \"rs\" is invalid: [spec.replicas: Invalid value: -4: must be greater than or equal to 0, \
         spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment, \
         spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"]"
    );
}
