//! Service validation: the subset of upstream `ValidateService` that
//! matters to a single-node runtime (name, ports, type, selector, affinity).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::defaults::default_service;
use crate::field::{FieldError, Invalid, Path};
use crate::names;
use crate::validation::meta::{NameRule, validate_labels, validate_object_meta};

type Errs = Vec<FieldError>;

/// Defaults then validates a Service, as the API server does on create.
pub fn admit_service(mut svc: Service) -> Result<Service, Invalid> {
    default_service(&mut svc);
    validate_service(&svc)?;
    Ok(svc)
}

/// Validates a defaulted Service.
pub fn validate_service(svc: &Service) -> Result<(), Invalid> {
    let mut errs = validate_object_meta(&svc.metadata, NameRule::Dns1035, &Path::new("metadata"));
    let spec_path = Path::new("spec");
    let spec = svc.spec.clone().unwrap_or_default();
    let ty = spec.type_.as_deref().unwrap_or("");
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports: &[ServicePort] = spec.ports.as_deref().unwrap_or(&[]);

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(spec_path.child("ports"), ""));
    }
    if ty == "ExternalName" {
        let en = spec.external_name.as_deref().unwrap_or("");
        if en.is_empty() {
            errs.push(FieldError::required(spec_path.child("externalName"), ""));
        }
    }
    let mut port_names = BTreeSet::new();
    let require_name = ports.len() > 1;
    for (i, sp) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            sp,
            require_name,
            headless,
            &mut port_names,
            &spec_path.child("ports").index(i),
        ));
    }
    if let Some(sel) = &spec.selector {
        errs.extend(validate_labels(sel, &spec_path.child("selector")));
    }
    match spec.session_affinity.as_deref().unwrap_or("") {
        "None" | "ClientIP" => {}
        "" => errs.push(FieldError::required(spec_path.child("sessionAffinity"), "")),
        other => errs.push(FieldError::not_supported(
            spec_path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    match ty {
        "" => errs.push(FieldError::required(spec_path.child("type"), "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(FieldError::not_supported(
            spec_path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ClusterIP" {
        for (i, sp) in ports.iter().enumerate() {
            if sp.node_port.is_some_and(|n| n != 0) {
                errs.push(FieldError::forbidden(
                    spec_path.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid::new(
            "Service",
            svc.metadata.name.clone().unwrap_or_default(),
            errs,
        ))
    }
}

fn validate_service_port(
    sp: &ServicePort,
    require_name: bool,
    headless: bool,
    names_seen: &mut BTreeSet<String>,
    path: &Path,
) -> Errs {
    let mut errs = Errs::new();
    let name = sp.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        for m in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid_str(path.child("name"), name, m));
        }
        if !names_seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    for m in names::is_valid_port_num(sp.port.into()) {
        errs.push(FieldError::invalid_num(
            path.child("port"),
            sp.port.into(),
            m,
        ));
    }
    match sp.protocol.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(path.child("protocol"), "")),
        "TCP" | "UDP" | "SCTP" => {}
        other => errs.push(FieldError::not_supported(
            path.child("protocol"),
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
    match &sp.target_port {
        Some(IntOrString::Int(n)) => {
            for m in names::is_valid_port_num((*n).into()) {
                errs.push(FieldError::invalid_num(
                    path.child("targetPort"),
                    (*n).into(),
                    m,
                ));
            }
        }
        Some(IntOrString::String(s)) => {
            for m in names::is_valid_port_name(s) {
                errs.push(FieldError::invalid_str(path.child("targetPort"), s, m));
            }
        }
        // Headless services may leave the target unset; others got a default.
        None if headless => {}
        None => errs.push(FieldError::required(path.child("targetPort"), "")),
    }
    errs
}
