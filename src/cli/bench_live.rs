//! `metagov bench live`: the real `metagov run` process under an open-loop
//! load over keep-alive loopback HTTP, against baselines measured in the
//! same command.
//!
//! The load generator sends at a constant offered rate from several
//! connections; each request has an intended send time on a fixed schedule,
//! and its latency is measured from that time (not from when it could be
//! sent), so a stall shows as the latency every request behind it really
//! saw (coordinated omission corrected). Baselines: an actix-web handler in
//! this process that parses the same JSON and returns a constant body, and
//! an fsync ceiling probe (write and fdatasync one 4 KiB block in a loop).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Connections the load generator keeps open.
const CONNECTIONS: usize = 32;
/// p99 above which a rate counts as not sustained.
const SUSTAINED_P99: Duration = Duration::from_millis(10);

#[allow(clippy::disallowed_methods)] // Benchmarks measure wall time; the deterministic crates never do.
fn now() -> Instant {
    Instant::now()
}

fn packet(job: usize, window: u64) -> String {
    format!(
        "{{\"job\": \"job-{job}\", \"domain\": \"d{}\", \"window\": {window}, \"phase\": \"train\", \"metrics\": \
         {{\"gain_p50\": 0.15, \"stability_mean\": 0.8, \"vram_high\": false, \"latency_ms\": 31.0, \"loss\": 2.31}}, \
         \"params\": {{\"tau\": 0.9}}}}",
        job % 8
    )
}

/// A keep-alive HTTP/1.1 connection.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// POSTs `body` and reads the whole response; its status.
    fn post(&mut self, path: &str, body: &[u8]) -> Result<u16> {
        write!(self.writer, "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", body.len())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(anyhow!("connection closed"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// Latencies of one open-loop run.
struct Run {
    latencies: Vec<Duration>,
    errors: u64,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).copied().unwrap_or(Duration::MAX)
    }
}

/// Offers `rate` packets/s for `seconds` over `CONNECTIONS` connections.
/// `window_base` keeps windows increasing across runs on one server.
fn open_loop(addr: SocketAddr, rate: u64, seconds: f64, window_base: u64) -> Result<Run> {
    let total = (rate as f64 * seconds) as u64;
    let per_connection = total / CONNECTIONS as u64;
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
    let start = now() + Duration::from_millis(50);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || -> Result<(Vec<Duration>, u64)> {
                let mut connection = Connection::open(addr)?;
                let mut latencies = Vec::with_capacity(per_connection as usize);
                let mut errors = 0;
                // Each connection's schedule is offset so sends interleave.
                let offset = interval.mul_f64(c as f64 / CONNECTIONS as f64);
                for i in 0..per_connection {
                    let intended = start + offset + interval.mul_f64(i as f64);
                    let wait = intended.saturating_duration_since(now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    let body = packet(c, window_base + i + 1);
                    match connection.post("/v1/telemetry", body.as_bytes()) {
                        Ok(200) => latencies.push(now().saturating_duration_since(intended)),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            connection = Connection::open(addr)?;
                        }
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), errors: 0 };
    for thread in threads {
        let (latencies, errors) = thread.join().map_err(|_| anyhow!("a load thread panicked"))??;
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    Ok(run)
}

/// A `metagov run` child process for the benchmark.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, durability: &str) -> Result<Server> {
        let exe = std::env::current_exe().context("cannot find the metagov binary")?;
        let mut child = Command::new(exe)
            .args(["run", "--listen", "127.0.0.1:0", "--queue-len-max", "65536", "--durability", durability, "--out"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start metagov run")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().ok_or_else(|| anyhow!("metagov run exited before listening"))??;
            if let Some(rest) = line.split("http://").nth(1) {
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).unwrap_or(rest.len());
                break rest[..end].parse()?;
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child, addr })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    fn stop(mut self) -> Result<()> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "metagov run exited with {status}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The baseline: actix-web parsing the same JSON, answering a constant body.
fn start_baseline() -> Result<SocketAddr> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        let result = system.block_on(async move {
            let server = actix_web::HttpServer::new(|| {
                actix_web::App::new().route(
                    "/v1/telemetry",
                    actix_web::web::post().to(|body: actix_web::web::Bytes| async move {
                        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
                        let status = if parsed.is_ok() { "accepted" } else { "rejected" };
                        actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(format!("{{\"status\":\"{status}\"}}"))
                    }),
                )
            })
            .disable_signals()
            .bind("127.0.0.1:0")?;
            let _ = sender.send(server.addrs().first().copied());
            server.run().await
        });
        if let Err(e) = result {
            eprintln!("bench baseline: {e}");
        }
    });
    receiver.recv()?.ok_or_else(|| anyhow!("the baseline did not bind"))
}

/// fdatasyncs of one 4 KiB block per second, over `seconds`.
fn fsync_ceiling(dir: &Path, seconds: f64) -> Result<f64> {
    let path = dir.join("bench-fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let start = now();
    let mut syncs = 0u64;
    while now().duration_since(start).as_secs_f64() < seconds {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = syncs as f64 / now().duration_since(start).as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The highest rate of `rates` whose p99 stays within `SUSTAINED_P99`
/// (rates are tried in order until two in a row fail: one noisy run on a
/// shared machine does not end the search).
fn max_sustained(addr: SocketAddr, rates: &[u64], seconds: f64, windows: &mut u64, out: &mut dyn Write) -> Result<u64> {
    let mut best = 0;
    let mut failed = 0;
    for &rate in rates {
        std::thread::sleep(Duration::from_millis(200));
        let run = open_loop(addr, rate, seconds, *windows)?;
        *windows += (rate as f64 * seconds) as u64;
        let p99 = run.percentile(0.99);
        let sustained = p99 <= SUSTAINED_P99 && run.errors == 0;
        writeln!(
            out,
            "    offered {rate:>6}/s: p99 {} ms, {} errors{}",
            ms(p99),
            run.errors,
            if sustained { "" } else { " (not sustained)" }
        )?;
        if sustained {
            best = rate;
            failed = 0;
        } else {
            failed += 1;
            if failed == 2 {
                break;
            }
        }
    }
    Ok(best)
}

/// The core alone, in this process: packets/s through `Supervisor::submit`
/// with a commit (frame write, and `fdatasync` when `sync`) every `batch`
/// packets. What the HTTP shell adds is the rest of a request's cost.
fn core_alone(dir: &Path, packets: u64, batch: u64, sync: bool) -> Result<f64> {
    let config = metagov_config::Config::default();
    let actors = metagov_actors::ACTOR_NAMES.iter().map(|a| a.to_string()).collect();
    let context = metagov_storage::init_session(config.run.seed, &config.canonical_toml(), actors);
    let path = dir.join(format!("bench-core-{batch}-{sync}.cmeta"));
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let writer = metagov_storage::ChronicleWriter::create(&path, &context, Default::default())?;
    let mut supervisor = metagov_live::Supervisor::new(&config, writer)?;
    let lines: Vec<metagov_live::Packet> =
        (0..packets).map(|i| metagov_live::Packet::Text(packet((i % 64) as usize, i / 64 + 1))).collect();
    let start = now();
    for (i, line) in lines.into_iter().enumerate() {
        supervisor.submit(line)?;
        if (i as u64 + 1).is_multiple_of(batch) {
            let writer = supervisor.journal_mut();
            writer.flush()?;
            if sync {
                writer.get_ref().get_ref().sync_data()?;
            }
        }
    }
    let rate = packets as f64 / now().duration_since(start).as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// `metagov bench live`.
pub fn bench_live(quick: bool, dir: &Path, out: &mut dyn Write) -> Result<()> {
    let seconds = if quick { 1.0 } else { 3.0 };
    let packets = if quick { 20_000 } else { 100_000 };
    writeln!(
        out,
        "## live: the core alone (Supervisor::submit, commit every N packets; no HTTP)
"
    )?;
    for (batch, sync) in [(1, false), (64, false), (1, true), (64, true)] {
        let n = if sync && batch == 1 { packets / 20 } else { packets };
        let rate = core_alone(dir, n, batch, sync)?;
        writeln!(
            out,
            "commit every {batch:>2} packet(s){}: {rate:>9.0} packets/s",
            if sync { ", fdatasync" } else { "" }
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "## live: metagov run under open-loop HTTP load ({CONNECTIONS} keep-alive connections, {seconds} s per rate)\n"
    )?;
    writeln!(out, "latency from each request's intended send time (coordinated omission corrected)")?;
    let mut sustained = Vec::new();
    for durability in ["buffered", "fsync"] {
        let run_dir = dir.join(format!("bench-live-{durability}"));
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)?;
        }
        let server = Server::start(&run_dir, durability)?;
        // Warm-up: connections, allocator, page cache; not counted.
        let mut windows = 0;
        open_loop(server.addr, 2_000, 0.5, windows)?;
        windows += 1_000;
        for rate in [1_000u64, 10_000] {
            let run = open_loop(server.addr, rate, seconds, windows)?;
            windows += (rate as f64 * seconds) as u64;
            writeln!(
                out,
                "{durability:>8} at {rate:>6}/s: p50 {} ms, p99 {} ms, p99.9 {} ms ({} answered, {} errors)",
                ms(run.percentile(0.5)),
                ms(run.percentile(0.99)),
                ms(run.percentile(0.999)),
                run.latencies.len(),
                run.errors
            )?;
        }
        writeln!(out, "  {durability}: maximum sustained rate (p99 ≤ 10 ms)")?;
        let rates = [2_000, 4_000, 8_000, 12_000, 16_000, 24_000, 32_000, 48_000];
        sustained.push((durability, max_sustained(server.addr, &rates, seconds, &mut windows, out)?));
        server.stop()?;
    }
    let baseline = start_baseline()?;
    open_loop(baseline, 2_000, 0.5, 0)?;
    writeln!(out, "  baseline (actix-web, parse the JSON, constant body): maximum sustained rate")?;
    let rates = [2_000, 4_000, 8_000, 12_000, 16_000, 24_000, 32_000, 48_000, 64_000];
    let base = max_sustained(baseline, &rates, seconds, &mut 0, out)?;
    let ceiling = fsync_ceiling(dir, seconds)?;
    let (buffered, fsync) = (sustained[0].1, sustained[1].1);
    writeln!(out, "\nmax sustained: buffered {buffered}/s, fsync {fsync}/s, actix-web baseline {base}/s")?;
    writeln!(out, "buffered / baseline: {:.2} (target ≥ 0.5)", buffered as f64 / base.max(1) as f64)?;
    writeln!(
        out,
        "fsync ceiling probe: {ceiling:.0} fdatasyncs/s; fsync mode / ceiling: {:.2} (target ≥ 2)",
        fsync as f64 / ceiling
    )?;

    let (small, large) = if quick { (10_000u64, 100_000u64) } else { (100_000, 1_000_000) };
    let run_dir = dir.join("bench-live-rss");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let server = Server::start(&run_dir, "buffered")?;
    let mut connection = Connection::open(server.addr)?;
    let mut sent = 0u64;
    let mut peaks = Vec::new();
    for target in [small, large] {
        while sent < target {
            let batch: Vec<String> =
                (0..1024u64).map(|i| packet(((sent + i) % 64) as usize, (sent + i) / 64 + 1)).collect();
            let status = connection.post("/v1/telemetry", format!("[{}]", batch.join(",")).as_bytes())?;
            anyhow::ensure!(status == 200, "a batch was answered {status}");
            sent += 1024;
        }
        peaks.push(server.peak_rss_kib().unwrap_or(0));
    }
    server.stop()?;
    writeln!(
        out,
        "peak RSS of metagov run: {} KiB after {small} packets, {} KiB after {large}: ratio {:.3} (target ≤ 1.10)\n",
        peaks[0],
        peaks[1],
        peaks[1] as f64 / peaks[0].max(1) as f64
    )?;
    Ok(())
}
