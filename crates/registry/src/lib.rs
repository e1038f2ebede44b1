//! Object storage with API-server semantics, shared by podrun run, get and server.
