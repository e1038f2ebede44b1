//! The mesh sidecar proxy: transparent HTTP/TCP capture listeners, access log, admin, drain.
