//! Pod, Job and Deployment manifests: parsing, API-server defaulting and validation.
