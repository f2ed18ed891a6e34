//! The simulator: scenario files in, seeded telemetry through the full
//! governance actor set, a chronicle, a deterministic log and a summary out.
//!
//! It owns the scenario format and its built-ins ([`scenario`]), the
//! `simulate` run ([`simulate`]), the summary computed from the actors'
//! egress ([`summary`]), the learned prior carried across runs
//! ([`priors`]), the governance scorecard ([`scorecard`]) and the kernel's
//! synthetic workload ([`workload`]).
//!
//! It must never read the clock or the environment, draw on a terminal or
//! open a socket: a run is a pure function of its scenario, config and seed,
//! and its only I/O is the run directory it is given, the scenario file it
//! is asked to read and the prior directory it is pointed at. Progress goes
//! to a caller's [`simulate::Progress`].

pub mod priors;
pub mod scenario;
pub mod scorecard;
pub mod simulate;
pub mod summary;
pub mod workload;
