//! `newt-bench`: newt's cost against the physical limit, the raw
//! vodozemac cost of the same cryptographic work measured in the same run.
//!
//! Usage: `cargo run --release -p newt-bench [-- --quick] [-- --only TEXT]`.
//! Each time is the median of several runs; each newt run is paired with a
//! limit run just before it and the ratio is the median of the pairs'
//! ratios, which is what counts on a shared, noisy machine.

mod cold_start;
mod decrypt;
mod first_share;
mod fixtures;
mod offset;
mod receive_keys;
mod reshare;
mod room_message;

use newt_crypto::store::MemoryStore;
use newt_sqlite::{SqliteStore, StoreKey};
use std::time::Duration;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds, with three decimals under one.
fn shown(d: Duration) -> String {
    match ms(d) {
        small if small < 1.0 => format!("{small:.3}"),
        large => format!("{large:.1}"),
    }
}

struct Row {
    workload: String,
    store: &'static str,
    threads: usize,
    newt: Duration,
    limit: Duration,
    /// Median of the ratios of back-to-back pairs: drift on a shared
    /// machine hits both halves of a pair alike.
    ratio: f64,
    /// The lowest and highest pair ratio: how noisy the median is.
    spread: (f64, f64),
}

fn print(rows: &[Row]) {
    println!(
        "| workload | store | threads | newt ms | limit ms (1 thread) | newt/limit | pairs (lowest–highest) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2}–{:.2} |",
            r.workload,
            r.store,
            r.threads,
            shown(r.newt),
            shown(r.limit),
            r.ratio,
            r.spread.0,
            r.spread.1
        );
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("thread pool: {e}"))
}

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = SqliteStore::open(&dir.path().join("b.db"), StoreKey::from_bytes([1; 32]))
        .unwrap_or_else(|e| panic!("store: {e}"));
    (dir, store)
}

/// One pair of a row, on a pool: the limit's time and newt's.
type Measure<'a> = &'a (dyn Fn(&rayon::ThreadPool) -> (Duration, Duration) + Sync);

/// Runs a workload on both stores and both thread counts. Each newt run
/// is paired with a run of the limit just before it, on the same pool:
/// with one thread, on the same thread, so both meet the same core (the
/// cores of a shared machine are not equally fast at any one time).
fn run_all(
    rows: &mut Vec<Row>,
    workload: &str,
    limit: impl FnMut() -> Duration + Send,
    reps: usize,
    cores: usize,
    memory: impl Fn() -> Duration + Sync,
    on_sqlite: impl Fn() -> Duration + Sync,
) {
    let limit = std::sync::Mutex::new(limit);
    // Both halves of a pair at one stack offset, the next pair at the next.
    let pairs = std::sync::atomic::AtomicUsize::new(0);
    let pair = |run: &(dyn Fn() -> Duration + Sync), pool: &rayon::ThreadPool| {
        let n = pairs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let limit = pool.install(|| {
            let mut limit = limit.lock().unwrap_or_else(|e| panic!("limit: {e}"));
            offset::at(n, &mut *limit)
        });
        (limit, pool.install(|| offset::at(n, run)))
    };
    let memory = |pool: &rayon::ThreadPool| pair(&memory, pool);
    let on_sqlite = |pool: &rayon::ThreadPool| pair(&on_sqlite, pool);
    measure_all(rows, workload, reps, cores, &memory, &on_sqlite);
}

/// Runs a workload on both stores and both thread counts, each run
/// measuring newt and the limit itself, in turns: long runs interleave
/// the two a step at a time, so that the machine's drift over seconds
/// hits both alike.
fn measure_all(
    rows: &mut Vec<Row>,
    workload: &str,
    reps: usize,
    cores: usize,
    memory: Measure<'_>,
    on_sqlite: Measure<'_>,
) {
    let mut counts = vec![1, cores];
    counts.dedup();
    // NEWT_BENCH_THREADS=n runs one thread count only (for profiling).
    if let Some(n) = std::env::var("NEWT_BENCH_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        counts = vec![n];
    }
    // NEWT_BENCH_STORE=memory|sqlite runs one store only (for profiling).
    let store = std::env::var("NEWT_BENCH_STORE").ok();
    let wants = |name: &str| store.as_deref().is_none_or(|s| s == name);
    for threads in counts {
        for (name, measure) in [("memory", memory), ("sqlite", on_sqlite)] {
            if !wants(name) {
                continue;
            }
            let pool = pool(threads);
            // Quick rows take more pairs (up to three times as many, in a
            // few seconds): their medians are the noisiest.
            let started = std::time::Instant::now();
            let mut pairs: Vec<(Duration, Duration)> = Vec::new();
            while pairs.len() < reps
                || (pairs.len() < 3 * reps && started.elapsed() < Duration::from_secs(3))
            {
                pairs.push(measure(&pool));
            }
            // NEWT_BENCH_PAIRS=1 prints every pair (how noisy a row is).
            if std::env::var_os("NEWT_BENCH_PAIRS").is_some() {
                for (l, n) in &pairs {
                    eprintln!(
                        "  {workload} {name} {threads}: limit {} newt {}",
                        shown(*l),
                        shown(*n)
                    );
                }
            }
            let mut ratios: Vec<f64> = pairs
                .iter()
                .map(|(l, n)| n.as_secs_f64() / l.as_secs_f64().max(1e-9))
                .collect();
            ratios.sort_by(f64::total_cmp);
            rows.push(Row {
                workload: workload.to_owned(),
                store: name,
                threads,
                newt: median(pairs.iter().map(|p| p.1).collect()),
                limit: median(pairs.iter().map(|p| p.0).collect()),
                ratio: ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN),
                spread: (
                    ratios.first().copied().unwrap_or(f64::NAN),
                    ratios.last().copied().unwrap_or(f64::NAN),
                ),
            });
        }
    }
}

/// Whether `--only` (a substring of the workload's name, or its end when
/// followed by `$`) selects it.
fn wanted(only: Option<&str>, workload: &str) -> bool {
    only.is_none_or(|o| match o.strip_suffix('$') {
        Some(end) => workload.ends_with(end),
        None => workload.contains(o),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .skip_while(|a| *a != "--cold-start-child")
        .nth(1)
    {
        cold_start::child(std::path::Path::new(dir));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only <text>`: just the workloads whose name contains it.
    let only = args
        .iter()
        .skip_while(|a| *a != "--only")
        .nth(1)
        .map(String::as_str);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    // NEWT_BENCH_REPS=n: pairs per row (more on a noisy machine).
    let reps = std::env::var("NEWT_BENCH_REPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 3 } else { 5 })
        .max(1);
    println!(
        "newt-bench on {cores} cores; medians of {reps} runs at least (up to {} for quick rows)\n",
        3 * reps
    );
    let mut rows = Vec::new();
    for &n in sizes {
        for (label, users) in [("users=devices", n), ("10 devices/user", (n / 10).max(1))] {
            let workload = format!("first share N={n} ({label})");
            if !wanted(only, &workload) {
                continue;
            }
            let peers = fixtures::peers(users, n);
            let input = first_share::limit_input(&peers);
            run_all(
                &mut rows,
                &workload,
                || first_share::limit(&input),
                reps,
                cores,
                || first_share::newt(&mut MemoryStore::new(), &peers),
                || first_share::newt(&mut sqlite().1, &peers),
            );
        }
        for (label, restarted) in [("", false), (" after restart", true)] {
            let workload = format!("re-share N={n}{label}");
            if !wanted(only, &workload) {
                continue;
            }
            let peers = fixtures::peers(n, n);
            let mut input = reshare::limit_input(&peers);
            run_all(
                &mut rows,
                &workload,
                || reshare::limit(&mut input),
                reps,
                cores,
                || reshare::newt(&mut MemoryStore::new(), &peers, restarted),
                || reshare::newt(&mut sqlite().1, &peers, restarted),
            );
        }
    }
    for &n in sizes {
        let workload = format!("room message N={n} (per message)");
        if !wanted(only, &workload) {
            continue;
        }
        let peers = fixtures::peers(n, n);
        let mut session = room_message::limit_input();
        run_all(
            &mut rows,
            &workload,
            || room_message::limit(&mut session),
            reps,
            cores,
            || room_message::newt(&mut MemoryStore::new(), &peers),
            || room_message::newt(&mut sqlite().1, &peers),
        );
    }
    let receive_n = if quick { 100 } else { 1000 };
    let workload = format!("receive keys ({receive_n} in one sync)");
    if wanted(only, &workload) {
        let peers = fixtures::peers(receive_n, receive_n);
        run_all(
            &mut rows,
            &workload,
            || receive_keys::limit(&mut receive_keys::limit_input(&peers)),
            reps,
            cores,
            || receive_keys::newt(&mut MemoryStore::new(), &peers),
            || receive_keys::newt(&mut sqlite().1, &peers),
        );
    }
    let (sessions, per) = if quick { (10, 1000) } else { (100, 1000) };
    let workload = format!("decrypt {} events in order", sessions * per);
    if wanted(only, &workload) {
        let input = decrypt::input(sessions, per);
        let memory = |pool: &rayon::ThreadPool| {
            pool.install(|| decrypt::measure(&mut MemoryStore::new(), &input))
        };
        let on_sqlite =
            |pool: &rayon::ThreadPool| pool.install(|| decrypt::measure(&mut sqlite().1, &input));
        measure_all(&mut rows, &workload, 3, cores, &memory, &on_sqlite);
    }
    print(&rows);
    if !wanted(only, "cold start") {
        return;
    }

    let cold = if quick { 10_000 } else { 100_000 };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    cold_start::prepare(dir.path(), cold);
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut runs = Vec::new();
    for _ in 0..reps {
        let out = std::process::Command::new(&exe)
            .arg("--cold-start-child")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let time: f64 = parts
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        let peak: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        runs.push((time, peak));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (time, peak) = runs[runs.len() / 2];
    println!(
        "\ncold start: open a store of {cold} inbound sessions and decrypt one event: {time:.1} ms, peak RSS {:.1} MB",
        peak as f64 / 1024.0
    );
}
