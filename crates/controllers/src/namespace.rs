//! Namespace deletion: a Namespace marked for deletion (`Terminating`) has everything
//! in it deleted, and once nothing is left its `kubernetes` finalizer is removed, which
//! ends it, as upstream's namespace controller does.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use podrun_store::{ApiError, DeleteOptions, ListOptions, ResourceType, object};
use serde_json::Value;

use crate::{Action, Ctx, Reconciler};

/// The finalizer a Namespace's `spec.finalizers` holds until it is empty.
pub const FINALIZER: &str = "kubernetes";

/// The Namespace controller.
#[derive(Debug)]
pub struct NamespaceController;

impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn reconcile(&self, ctx: &mut Ctx<'_>, key: &str, _now: Timestamp) -> Result<Action, ApiError> {
        let Some(ns) = ctx.informers.namespaces.get(key) else {
            return Ok(Action::Done);
        };
        if !object::is_deleting(&ns) {
            return Ok(Action::Done);
        }
        let mut remaining = 0;
        for rt in ResourceType::ALL.iter().filter(|rt| rt.namespaced) {
            let list = ctx.store.list(rt, Some(key), &ListOptions::default())?;
            for item in &list.items {
                remaining += 1;
                if object::is_deleting(item) {
                    continue;
                }
                match ctx.delete(rt, Some(key), object::name(item), &DeleteOptions::default()) {
                    Err(e) if e.code() == 404 => remaining -= 1,
                    Err(e) => return Err(e),
                    Ok(d) if d.gone => remaining -= 1,
                    Ok(_) => {}
                }
            }
        }
        if remaining > 0 {
            return Ok(Action::RequeueAfter(Duration::from_millis(200)));
        }
        let mut updated = ns.clone();
        if let Some(list) = updated
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f.as_str() != Some(FINALIZER));
        }
        if updated != ns {
            ctx.update(&ResourceType::NAMESPACES, None, key, updated)?;
        }
        Ok(Action::Done)
    }
}
