//! The `metagov` binary's library half: the command implementations, so the
//! integration tests can drive them.
//!
//! This is the only crate that may touch the terminal, signals and the wall
//! clock (for benchmarks and progress bars); it holds no governance logic
//! and no simulation: it parses arguments, calls the library crates and
//! prints what they return.

pub mod cli;
