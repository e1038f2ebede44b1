//! Test support: simulated clock and scenario drivers for podrun's cores.
//!
//! * [`pod`] builds defaulted pods (what the API server would hand the kubelet) with a
//!   few lines per container.
//! * [`sim`] drives a [`podrun_lifecycle::PodMachine`] the way quinn's `Pair` drives a
//!   connection: fake containers follow scripts ([`sim::Behaviour`]), every result is
//!   delivered at its simulated instant, [`sim::Sim::step`] jumps the clock straight to
//!   the next event or machine deadline, and everything that happened is kept as a
//!   timed transcript. Nothing sleeps in real time.

pub mod pod;
pub mod sim;
