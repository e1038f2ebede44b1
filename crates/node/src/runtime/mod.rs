//! Container processes: namespaces, mounts, logs and exit events.
