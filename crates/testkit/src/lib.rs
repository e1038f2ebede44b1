//! Test support: simulated clock and scenario drivers for podrun's cores.
