//! Records the synthetic telemetry pipeline into a chronicle, so the
//! chronicle commands have a real run to work on:
//!
//! ```text
//! cargo run --release --example pipeline -- run.cmeta 10000
//! metagov inspect run.cmeta
//! ```

use anyhow::{Context, Result};
use metagov::workload::{self, TelemetryStream, TELEMETRY_RAW};
use metagov_bus::BusLimits;
use metagov_config::Config;
use metagov_storage::{init_session, ChronicleWriter, WriterOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context("usage: pipeline OUT.cmeta [PACKETS]")?;
    let packets: u64 = args.next().map_or(Ok(10_000), |n| n.parse()).context("PACKETS must be a whole number")?;
    let config = Config::default();
    let actors = workload::ACTORS.iter().map(|a| a.to_string()).collect();
    let context = init_session(config.run.seed, &config.canonical_toml(), actors);
    let writer = ChronicleWriter::create(path.as_ref(), &context, WriterOptions::default())?;
    let mut bus = workload::build_bus(config.run.seed, BusLimits::default(), writer)?;
    let mut stream = TelemetryStream::new(config.run.seed, 16, 4);
    for _ in 0..packets {
        bus.ingress(TELEMETRY_RAW, stream.next_packet())?;
    }
    bus.into_journal().seal()?;
    println!("wrote {path}: {packets} packets");
    Ok(())
}
