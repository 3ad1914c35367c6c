//! Micro-benchmark for `bench/run.sh`: encode + snappy-compress one 10,000-series remote-write
//! request through the crate's public API, the way the push does it.
//!
//! ```text
//! cargo run --release --example bench_push -- [--series N] [--iterations K] [--path P]
//! ```
//!
//! The snapshot looks like the agent's own: histogram families with the agent's label set
//! (`model`, `endpoint`, `le`, `agent_hostname`, `service`), 100 models. It is built once;
//! each iteration times what a snapshot costs on its way to the wire, as one batch:
//! `Encoded::from_families` (what `Writers::enqueue_families` does), `write_to` (the copy a
//! writer's queue makes of a batch's series) and `Compressor::compress` into an owned body (a
//! writer's task keeps its raw buffer and compressor between batches; so does this loop).
//! `--path owned` times the owned-struct path instead, `encode_families` then
//! `Encoded::from_series` (what `Writers::enqueue` does), for comparison.
//! `--path memory` and `--path disk` time `Writers::enqueue_families` itself for one writer
//! (whose receiver is down, so its queue only grows): encode, then the memory queue, or the
//! disk queue's record written and `fdatasync`ed (`[writer_opt] queue_dir`, a fresh folder
//! under the system temp dir, removed afterwards).
//! Prints `push_encode series=N iterations=K bytes=B median_ms=M min_ms=m max_ms=x`.

use std::time::Instant;

use ollama_tap::config::{Writer, WriterOpt};
use ollama_tap::push::{encode_families, Compressor, Encoded, Writers};
use ollama_tap::{Family, Kind};

const ENDPOINTS: [&str; 4] = [
    "/api/generate",
    "/api/chat",
    "/v1/chat/completions",
    "/api/embed",
];
const BUCKETS: [&str; 18] = [
    "0.01", "0.02", "0.04", "0.08", "0.16", "0.32", "0.64", "1.28", "2.56", "5.12", "10.24",
    "20.48", "40.96", "81.92", "163.84", "327.68", "655.36", "+Inf",
];

fn usage() -> ! {
    eprintln!(
        "usage: bench_push [--series N] [--iterations K] [--path bytes|owned|memory|disk]   (default 10000, 50, bytes)"
    );
    std::process::exit(2);
}

/// `n` series spread over a few histogram families, as the agent's snapshot would hold them.
fn snapshot(n: usize) -> Vec<Family> {
    let names: [&'static str; 4] = [
        "ollama_request_duration_seconds",
        "ollama_prompt_eval_duration_seconds",
        "ollama_load_duration_seconds",
        "ollama_time_to_first_token_seconds",
    ];
    let mut families: Vec<Family> = names
        .iter()
        .map(|name| Family::new(name, "Benchmark family.", Kind::Histogram))
        .collect();
    // 18 bucket bounds + _sum + _count = 20 series per (family, model, endpoint).
    let mut i = 0usize;
    'fill: for model in 0.. {
        for endpoint in ENDPOINTS {
            for family in families.iter_mut() {
                let bounds = BUCKETS.iter().map(|le| ("_bucket", Some(*le)));
                for (suffix, le) in bounds.chain([("_sum", None), ("_count", None)]) {
                    if i == n {
                        break 'fill;
                    }
                    let mut labels = vec![
                        ("model".to_owned(), format!("model-{model}:latest")),
                        ("endpoint".to_owned(), endpoint.to_owned()),
                        ("agent_hostname".to_owned(), "bench-host".to_owned()),
                        ("service".to_owned(), "ollama".to_owned()),
                    ];
                    if let Some(le) = le {
                        labels.push(("le".to_owned(), le.to_string()));
                    }
                    family.push(suffix, labels, (i as f64) * 0.5);
                    i += 1;
                }
            }
        }
    }
    families
}

/// Each iteration: a snapshot encoded (and, for `owned`, built as structs first), copied as
/// one batch and compressed; the body's size.
fn encode_times(families: &[Family], iterations: usize, owned: bool) -> (Vec<f64>, usize) {
    let ts = 1_700_000_000_000;
    let mut times = Vec::with_capacity(iterations);
    let mut bytes = 0;
    let mut raw = Vec::new();
    let mut compressor = Compressor::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let encoded = if owned {
            Encoded::from_series(&encode_families(families, ts))
        } else {
            Encoded::from_families(families, ts)
        };
        raw.clear();
        encoded.write_to(&mut raw);
        let body = compressor.compress(&raw).to_vec();
        drop(encoded);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        bytes = std::hint::black_box(body).len();
    }
    (times, bytes)
}

/// Each iteration: `Writers::enqueue_families` for one writer whose receiver is down, with a
/// memory queue or a disk queue; the disk queue's size at the end (0 for memory).
fn enqueue_times(families: &[Family], iterations: usize, disk: bool) -> (Vec<f64>, usize) {
    let dir = std::env::temp_dir().join(format!("ollama-tap-bench-queue-{}", std::process::id()));
    // Nothing listens on port 1: the sender backs off and the queue keeps every snapshot.
    let writer = Writer::new("http://127.0.0.1:1/write");
    let opt = WriterOpt {
        queue_dir: disk.then(|| dir.clone()),
        ..WriterOpt::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let _guard = runtime.enter();
    let writers = Writers::start(&[writer], &opt).expect("the writer starts");
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        writers.enqueue_families(families, 1_700_000_000_000 + i as i64 * 15_000);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let bytes = walk_size(&dir);
    drop(writers);
    let _ = std::fs::remove_dir_all(&dir);
    (times, bytes as usize)
}

/// Bytes of the files under `dir`.
fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn main() {
    let (mut series, mut iterations, mut path) = (10_000usize, 50usize, "bytes".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--series" => series = v.parse().unwrap_or_else(|_| usage()),
            "--iterations" => iterations = v.parse().unwrap_or_else(|_| usage()),
            "--path" if ["bytes", "owned", "memory", "disk"].contains(&v.as_str()) => path = v,
            _ => usage(),
        }
    }
    let iterations = iterations.max(1);
    let families = snapshot(series);
    let total: usize = families.iter().map(|f| f.series.len()).sum();
    assert_eq!(
        total, series,
        "the snapshot holds the asked number of series"
    );
    let (mut times, bytes) = match path.as_str() {
        "memory" | "disk" => enqueue_times(&families, iterations, path == "disk"),
        _ => encode_times(&families, iterations, path == "owned"),
    };
    times.sort_by(f64::total_cmp);
    let median = if iterations % 2 == 1 {
        times[iterations / 2]
    } else {
        (times[iterations / 2 - 1] + times[iterations / 2]) / 2.0
    };
    println!(
        "push_encode series={series} iterations={iterations} bytes={bytes} median_ms={median:.3} min_ms={:.3} max_ms={:.3}",
        times[0],
        times[iterations - 1]
    );
}
