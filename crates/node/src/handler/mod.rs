//! Probe and lifecycle-hook handlers: exec, httpGet, tcpSocket, grpc, sleep.
