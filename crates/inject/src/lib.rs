//! Mesh sidecar injection: pod + mesh config to injected pod and JSONPatch.
