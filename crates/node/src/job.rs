//! Jobs on the node: stored for the Job controller (`podrun_controllers::job`, where
//! the rules live), which creates their pods; the node runs those pods as it runs any
//! other.

use k8s_openapi::api::batch::v1::Job;

use crate::objects::Resource;
use crate::{Error, Node, key_of};

/// Stores the Job. A finished Job of the same name left by an earlier run is deleted
/// first (its pods go with it); an unfinished one makes the store answer
/// `AlreadyExists`.
pub(crate) fn create(node: &Node, mut job: Job) -> Result<Job, Error> {
    let key = key_of(&job.metadata);
    let store = &node.shared.store;
    if let Some(old) = store.get::<Job>(Resource::JOBS, &key)?
        && podrun_controllers::job::finished(&old)
    {
        store.delete(Resource::JOBS, &key, None)?;
    }
    job.metadata.namespace = Some(key.namespace.clone());
    job.metadata.uid = None;
    job.metadata.creation_timestamp = None;
    job.metadata.resource_version = None;
    job.status = None;
    store.create(Resource::JOBS, &mut job)?;
    Ok(job)
}
