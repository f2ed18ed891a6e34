//! `metagov bench bundle`: `bundle verify` throughput on a large signed
//! bundle against `sha256sum` of the same bytes, measured in the same
//! command (docs/BENCHMARKS.md, "Bundles"); then a chronicle's seal
//! signature against writing that chronicle.
//!
//! The data is incompressible (ChaCha8 output), so deflate stores it and
//! what is measured is the verify path itself: reading the zip, inflating,
//! CRC-32, SHA-256. Both contenders read warm files from the page cache.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use metagov_bundle::{Plan, SecretKey};

use super::bench::{median, met, now};
use super::progress::bytes_bar;
use metagov_bus::ActorRng;

/// Files the data is split into: a few large files and the manifest of a
/// realistic run directory, not one blob.
const FILES: u64 = 4;

/// Timed runs of each contender; the median is reported.
const RUNS: usize = 3;

pub(super) fn bench_bundle(bytes: u64, dir: &Path, out: &mut dyn Write) -> Result<()> {
    let source = dir.join("bench-bundle-src");
    let bundle = dir.join("bench-bundle.zip");
    let files = write_data(&source, bytes)?;
    let key = SecretKey::from_seed([42; 32]);
    let pinned = key.public();

    let start = now();
    let plan = Plan::scan(&source)?;
    let mut writer =
        BufWriter::new(std::fs::File::create(&bundle).with_context(|| format!("cannot create {}", bundle.display()))?);
    let bar = bytes_bar(plan.bytes(), true, "bundling");
    metagov_bundle::pack(&plan, Some(&key), &mut writer, &bundle, &mut |done, _| bar.set_position(done))?;
    writer.flush().with_context(|| format!("cannot write {}", bundle.display()))?;
    drop(writer);
    bar.finish_and_clear();
    let packing = now().duration_since(start);

    let verify_once = || -> Result<Duration> {
        let file = std::fs::File::open(&bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
        let start = now();
        let report = metagov_bundle::verify(BufReader::new(file), &bundle, Some(&pinned), &mut |_, _| {})?;
        let spent = start.elapsed();
        anyhow::ensure!(report.findings.is_empty(), "the bench bundle does not verify: {:?}", report.findings);
        anyhow::ensure!(report.bytes == bytes, "verified {} bytes of {bytes}", report.bytes);
        Ok(spent)
    };
    let sha256sum_once = || -> Result<Duration> {
        let start = now();
        let status =
            Command::new("sha256sum").args(&files).stdout(Stdio::null()).status().context("cannot run sha256sum")?;
        let spent = start.elapsed();
        anyhow::ensure!(status.success(), "sha256sum failed: {status}");
        Ok(spent)
    };
    // Warm the page cache for both contenders.
    verify_once()?;
    sha256sum_once()?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        ours.push(verify_once()?);
        theirs.push(sha256sum_once()?);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let zip_bytes = std::fs::metadata(&bundle).map_or(0, |m| m.len());
    std::fs::remove_file(&bundle).ok();
    std::fs::remove_dir_all(&source).ok();

    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "## bundle verify throughput ({bytes} bytes of incompressible data in {FILES} files, a {zip_bytes}-byte signed zip, warm page cache, median of {RUNS})\n"
    )?;
    writeln!(out, "| tool | MB/s | vs sha256sum |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(out, "| sha256sum of the files | {:.0} | 1.00 |", mbps(theirs))?;
    let ratio = mbps(ours) / mbps(theirs);
    writeln!(
        out,
        "| metagov bundle verify --pubkey (inflate, CRC-32, SHA-256 of every byte, signature) | {:.0} | {ratio:.2} |",
        mbps(ours)
    )?;
    writeln!(
        out,
        "| metagov bundle --key (scan, read, SHA-256, deflate, write; one run) | {:.0} | {:.2} |",
        mbps(packing),
        mbps(packing) / mbps(theirs)
    )?;
    writeln!(out, "\ntarget: verify ≥ 0.5 × sha256sum ({ratio:.2}: {})\n", met(ratio >= 0.5))?;
    bench_seal(dir, &key, out)
}

/// Deliveries in the chronicle whose seal is signed: about 19 MB.
const SEAL_DELIVERIES: u64 = 1_000_000;

/// Signing a chronicle's seal and checking the signature against writing
/// the chronicle, each the median of [`RUNS`]: the signature itself (read
/// the footer, sign it, write `RUN.cmeta.sig`), the check `verify --pubkey`
/// adds to `verify`, and the full check `metagov sign` runs first (a
/// damaged file is never signed).
fn bench_seal(dir: &Path, key: &SecretKey, out: &mut dyn Write) -> Result<()> {
    let chronicle = dir.join("bench-seal.cmeta");
    let public = dir.join("bench-seal.pub");
    std::fs::write(&public, key.public().file_text()).with_context(|| format!("cannot write {}", public.display()))?;
    let mut writes = Vec::new();
    let mut deliveries = 0;
    for _ in 0..RUNS {
        let start = now();
        deliveries = super::bench::write_chronicle(&chronicle, SEAL_DELIVERIES, "chronicle to sign")?;
        writes.push(start.elapsed());
    }
    let timed = |f: &dyn Fn() -> Result<()>| -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let start = now();
            f()?;
            times.push(start.elapsed());
        }
        Ok(median(times))
    };
    let sign = timed(&|| super::bundle::write_seal_signature(&chronicle, key).map(drop))?;
    let check = timed(&|| {
        let verdict = super::bundle::check_seal_signature(&chronicle, &public)?;
        anyhow::ensure!(verdict.passed, "the bench seal does not check: {}", verdict.line);
        Ok(())
    })?;
    let full = timed(&|| super::bundle::sign_sealed(&chronicle, key).map(drop))?;
    let write = median(writes);
    let bytes = std::fs::metadata(&chronicle).map_or(0, |m| m.len());
    std::fs::remove_file(&chronicle).ok();
    std::fs::remove_file(metagov_bundle::seal::seal_signature_path(&chronicle)).ok();
    std::fs::remove_file(&public).ok();
    let share = |d: Duration| 100.0 * d.as_secs_f64() / write.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "## a chronicle's seal signature against writing the chronicle ({deliveries} deliveries, {bytes} bytes, median of {RUNS})\n"
    )?;
    writeln!(out, "| step | time | of writing |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(
        out,
        "| writing the chronicle (the bench pipeline on the bus: frames, packing, seal; no fsync) | {:.1} ms | 100 % |",
        ms(write)
    )?;
    writeln!(
        out,
        "| signing its seal (footer, Ed25519, RUN.cmeta.sig written) | {:.3} ms | {:.3} % |",
        ms(sign),
        share(sign)
    )?;
    writeln!(
        out,
        "| checking the seal signature (what verify --pubkey adds to verify) | {:.3} ms | {:.3} % |",
        ms(check),
        share(check)
    )?;
    writeln!(
        out,
        "| metagov sign: the full verify first, then the signature | {:.1} ms | {:.1} % |",
        ms(full),
        share(full)
    )?;
    let both = share(sign) + share(check);
    writeln!(
        out,
        "\ntarget: signing and checking a seal ≤ 2 % of writing the chronicle ({both:.3} %: {})\n",
        met(both <= 2.0)
    )?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes `bytes` of ChaCha8 output (seed 42) into [`FILES`] files under
/// `dir` (replaced if an earlier run left it), and returns their paths.
fn write_data(dir: &Path, bytes: u64) -> Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = ActorRng::for_actor(42, "bench-bundle");
    let bar = bytes_bar(bytes, true, "writing data");
    let mut paths = Vec::new();
    let mut written = 0;
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..FILES {
        let size = bytes / FILES + u64::from(i < bytes % FILES);
        let path = dir.join(format!("shard-{i}.bin"));
        let mut file =
            BufWriter::new(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            for word in chunk[..n].chunks_mut(8) {
                let value = rng.next_u64().to_le_bytes();
                word.copy_from_slice(&value[..word.len()]);
            }
            file.write_all(&chunk[..n]).with_context(|| format!("cannot write {}", path.display()))?;
            left -= n as u64;
            written += n as u64;
            bar.set_position(written);
        }
        file.flush().with_context(|| format!("cannot write {}", path.display()))?;
        paths.push(path);
    }
    bar.finish_and_clear();
    Ok(paths)
}
