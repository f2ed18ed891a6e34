//! The `metagov` binary's library half: the command implementations (so the
//! integration tests can drive them) and the synthetic workload.
//!
//! This is the only crate that may touch the terminal, the network, signals
//! and the wall clock (for benchmarks); it never holds governance logic.

pub mod cli;
pub mod priors;
pub mod scenario;
pub mod simulate;
pub mod summary;
pub mod workload;
