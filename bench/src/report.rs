//! Results: what a run, the latency test and a refused run hand back (one
//! JSON line from the child process each), medians over the rounds, and
//! the printed report, which ends with lines scripts can read: a
//! `ratio <contender>/baseline: X.XX` per contender, `ratio cli/ext: X.XX`,
//! `ratio ext-e2e/baseline-e2e: X.XX`, then `enqueue p99 us: X.X` and the
//! `spool enqueue p99 us` lines.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{contenders::Contender, measure::Memory, sink::Stats};

/// One contender's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub contender: String,
    pub n: u64,
    /// Time to send everything (and, for the ingestor, shut down).
    pub wall_secs: f64,
    /// CPU time of the process over the same span, all threads.
    pub cpu_secs: f64,
    /// The input being the prebuilt events.
    pub memory: Memory,
    /// What the sink counted.
    pub sink: Stats,
}

impl RunResult {
    pub fn events_per_sec(&self) -> f64 {
        self.n as f64 / self.wall_secs
    }

    pub fn cpu_per_100k(&self) -> f64 {
        self.cpu_secs * 100_000.0 / self.n as f64
    }

    pub fn peak_mib(&self) -> f64 {
        self.memory.peak_mib()
    }

    pub fn over_input_mib(&self) -> Option<f64> {
        self.memory.over_input_mib()
    }

    pub fn bytes_per_event(&self) -> f64 {
        self.sink.bytes as f64 / self.n as f64
    }

    /// One line for progress output.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} events/s, CPU {:.3} s / 100k, peak RSS {:.1} MiB ({} over input), {:.1} bytes/event, {} requests",
            self.events_per_sec(),
            self.cpu_per_100k(),
            self.peak_mib(),
            mib_or_na(self.over_input_mib()),
            self.bytes_per_event(),
            self.sink.requests,
        )
    }
}

/// The enqueue-latency test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    pub n: u64,
    /// The ingestor's queue capacity (at least `n`: it never fills).
    pub capacity: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Delivered when the last `track()` returned: the sink was slow if
    /// this is well below `n`.
    pub delivered_after_tracking: u64,
    /// Still queued then.
    pub queued_after_tracking: u64,
}

/// The ingestor against a sink that refuses every request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedResult {
    pub n: u64,
    /// The ingestor's capacity and `max_retained` (its defaults).
    pub capacity: u64,
    pub max_retained: u64,
    /// Tracking and shutting down.
    pub wall_secs: f64,
    /// The input being nothing: each event is built when it is tracked.
    pub memory: Memory,
    /// `Metrics::failed` and `Metrics::unreported` after shutdown.
    pub failed: u64,
    pub unreported: u64,
    /// `ShutdownReport::undelivered_items()`.
    pub undelivered_items: u64,
    /// What the sink saw (and refused).
    pub sink: Stats,
}

/// The ingestor with a spool during an outage (every request answered 503).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutageResult {
    pub n: u64,
    /// The ingestor's capacity (its default): what memory holds at most.
    pub capacity: u64,
    /// Tracking and shutting down.
    pub wall_secs: f64,
    /// The input being nothing: each event is built when it is tracked.
    pub memory: Memory,
    /// What the spool held on disk when the last `track()` returned.
    pub spooled_bytes: u64,
}

/// The spool's figures: enqueue latency under each sync policy, and memory
/// while the spool grows during an outage.
pub struct SpoolFigures {
    /// `SyncPolicy::Interval` (the default).
    pub interval: LatencyResult,
    /// `SyncPolicy::Always`: an fsync before `track()` returns.
    pub always: LatencyResult,
    /// The two outage runs, smaller first.
    pub outage: [OutageResult; 2],
}

/// The ingestor's own runs: refused, enqueue latency, and with a spool.
pub struct Ingestion<'a> {
    /// The refused runs at each of the two sizes, smaller first.
    pub refused: &'a [Vec<RefusedResult>; 2],
    pub latency: &'a LatencyResult,
    pub spool: &'a SpoolFigures,
}

/// The most a spooled `track()` may take at p99 with the interval policy.
const SPOOL_P99_TARGET_US: f64 = 1000.0;

/// What the orchestrator ran.
pub struct Settings {
    pub n: usize,
    pub rounds: usize,
    pub rss_n: usize,
    pub latency_n: usize,
    pub latency_delay_ms: u64,
    /// The two sizes of the refused runs, smaller first.
    pub refused_n: [usize; 2],
    /// The two sizes of the CLI's memory runs, smaller first.
    pub cli_rss_n: [usize; 2],
    /// The two sizes of the spooled outage runs, smaller first.
    pub outage_n: [usize; 2],
}

/// The CLI's memory runs at one input size: medians and the range.
struct CliMemory {
    n: usize,
    runs: usize,
    peak_mib: f64,
    min_mib: f64,
    max_mib: f64,
    events_per_sec: f64,
    cpu_per_100k: f64,
}

impl CliMemory {
    /// The CLI runs among `runs` that read `n` lines.
    fn of(n: usize, runs: &[RunResult]) -> Self {
        let runs: Vec<&RunResult> = runs.iter().filter(|run| run.n == n as u64).collect();
        let peaks: Vec<f64> = runs.iter().map(|run| run.peak_mib()).collect();
        let of =
            |f: fn(&RunResult) -> f64| median(&runs.iter().map(|run| f(run)).collect::<Vec<_>>());
        Self {
            n,
            runs: runs.len(),
            peak_mib: median(&peaks),
            min_mib: peaks.iter().copied().fold(f64::INFINITY, f64::min),
            max_mib: peaks.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            events_per_sec: of(RunResult::events_per_sec),
            cpu_per_100k: of(RunResult::cpu_per_100k),
        }
    }
}

/// The refused runs at one size: the run of median peak RSS, and the
/// range. A single run's peak moves by several MiB (which of the two
/// workers' malloc arenas a freed event goes back to is a matter of thread
/// timing), so one run per size is not a measurement.
struct RefusedSize<'a> {
    median: &'a RefusedResult,
    runs: usize,
    min_mib: f64,
    max_mib: f64,
}

impl<'a> RefusedSize<'a> {
    /// Of at least one run.
    fn of(runs: &'a [RefusedResult]) -> Self {
        let mut sorted: Vec<&RefusedResult> = runs.iter().collect();
        sorted.sort_by(|a, b| a.memory.peak_mib().total_cmp(&b.memory.peak_mib()));
        Self {
            median: sorted[(sorted.len() - 1) / 2],
            runs: sorted.len(),
            min_mib: sorted[0].memory.peak_mib(),
            max_mib: sorted[sorted.len() - 1].memory.peak_mib(),
        }
    }
}

/// Medians of one contender's rounds.
struct Row {
    name: &'static str,
    events_per_sec: f64,
    /// (max − min) / median of events/s.
    spread: f64,
    cpu_per_100k: f64,
    peak_mib: f64,
    over_input_mib: Option<f64>,
    bytes_per_event: f64,
}

impl Row {
    /// The medians of `contender`'s runs among `runs`.
    fn of(contender: Contender, runs: &[RunResult]) -> Self {
        let runs: Vec<&RunResult> = runs
            .iter()
            .filter(|run| run.contender == contender.name())
            .collect();
        let metric =
            |f: &dyn Fn(&RunResult) -> f64| runs.iter().map(|run| f(run)).collect::<Vec<_>>();
        let rates = metric(&RunResult::events_per_sec);
        let events_per_sec = median(&rates);
        let (min, max) = rates.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), &r| {
            (lo.min(r), hi.max(r))
        });
        let over_input = runs
            .iter()
            .map(|run| run.over_input_mib())
            .collect::<Option<Vec<_>>>();
        Self {
            name: contender.name(),
            events_per_sec,
            spread: (max - min) / events_per_sec,
            cpu_per_100k: median(&metric(&RunResult::cpu_per_100k)),
            peak_mib: median(&metric(&RunResult::peak_mib)),
            over_input_mib: over_input.map(|values| median(&values)),
            bytes_per_event: median(&metric(&RunResult::bytes_per_event)),
        }
    }
}

/// The median over rounds of `contender`'s events/s divided by
/// `reference`'s in the same round. `runs` holds whole rounds, one run of
/// each contender per round.
fn paired_ratio(runs: &[RunResult], contender: Contender, reference: Contender) -> f64 {
    let ratios: Vec<f64> = runs
        .chunks(Contender::ALL.len())
        .filter_map(|round| {
            let rate = |c: Contender| {
                round
                    .iter()
                    .find(|run| run.contender == c.name())
                    .map(RunResult::events_per_sec)
            };
            Some(rate(contender)? / rate(reference)?)
        })
        .collect();
    median(&ratios)
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// Whether `value` is within 10% of `reference`, either way.
fn within_10_percent(value: f64, reference: f64) -> bool {
    (value - reference).abs() <= 0.1 * reference
}

fn mib_or_na(value: Option<f64>) -> String {
    value.map_or_else(
        || "n/a (clear_refs failed)".to_owned(),
        |mib| format!("{mib:.1} MiB"),
    )
}

/// The CLI's runs apart from the rounds.
pub struct CliRuns<'a> {
    /// At the two sizes of `--cli-rss-n`, for its memory.
    pub memory: &'a [RunResult],
    /// From the CP949 input, for `cli-cp949 events/s`.
    pub cp949: &'a [RunResult],
}

/// The whole report: machine, table, memory and latency lines, targets,
/// and the machine-readable lines last.
pub fn render(
    settings: &Settings,
    machine: &str,
    runs: &[RunResult],
    big_runs: &[RunResult],
    cli: CliRuns<'_>,
    ingestion: Ingestion<'_>,
) -> String {
    let Ingestion {
        refused,
        latency,
        spool,
    } = ingestion;
    let refused = refused.each_ref().map(|runs| RefusedSize::of(runs));
    let CliRuns {
        memory: cli_runs,
        cp949: cp949_runs,
    } = cli;
    let rows: Vec<Row> = Contender::ALL
        .into_iter()
        .map(|contender| Row::of(contender, runs))
        .collect();
    let row = |contender: Contender| {
        rows.iter()
            .find(|row| row.name == contender.name())
            .expect("a row per contender")
    };
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "machine: {machine}");
    let _ = writeln!(
        w,
        "setup: N = {} events (a line item of 5 fields and 1 property each), {} per request, {} in flight, {} Tokio workers; \
         each run in its own process, the sink (hyper, parses every body) in another; \
         {} rounds alternating the contenders; medians",
        settings.n,
        crate::contenders::BATCH,
        crate::contenders::IN_FLIGHT,
        crate::WORKER_THREADS,
        settings.rounds,
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| contender | events/s | spread | CPU s / 100k | peak RSS MiB | peak over input MiB | bytes/event |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let over = row
            .over_input_mib
            .map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.1}"));
        let _ = writeln!(
            w,
            "| {} | {:.0} | {:.1}% | {:.3} | {:.1} | {} | {:.1} |",
            row.name,
            row.events_per_sec,
            row.spread * 100.0,
            row.cpu_per_100k,
            row.peak_mib,
            over,
            row.bytes_per_event,
        );
    }
    let _ = writeln!(w);
    let ingestor = row(Contender::Ingestor);
    let big = Row::of(Contender::Ingestor, big_runs);
    let big_n = settings.rss_n;
    let _ = writeln!(
        w,
        "ingestor peak RSS, N = {}: {:.1} MiB, {} over input (median of {} runs)",
        settings.n,
        ingestor.peak_mib,
        mib_or_na(ingestor.over_input_mib),
        settings.rounds,
    );
    let _ = writeln!(
        w,
        "ingestor peak RSS, N = {big_n}: {:.1} MiB, {} over input (median of {} runs; {:.0} events/s)",
        big.peak_mib,
        mib_or_na(big.over_input_mib),
        big_runs.len(),
        big.events_per_sec,
    );
    if !cp949_runs.is_empty() {
        let rates: Vec<f64> = cp949_runs.iter().map(RunResult::events_per_sec).collect();
        let cli = row(Contender::Cli).events_per_sec;
        let cp949 = median(&rates);
        let _ = writeln!(
            w,
            "cli-cp949 events/s: {cp949:.0} (median of {} runs at N = {}; CP949 input with \
             Korean product names, --encoding cp949; cli from UTF-8: {cli:.0} events/s, \
             ratio {:.2})",
            rates.len(),
            settings.n,
            cp949 / cli.max(1e-9),
        );
    }
    let cli_memory = settings.cli_rss_n.map(|n| CliMemory::of(n, cli_runs));
    for size in &cli_memory {
        let _ = writeln!(
            w,
            "cli peak RSS, N = {} lines: {:.1} MiB (median of {} runs, {:.1} to {:.1}; {:.0} events/s, CPU {:.3} s / 100k)",
            size.n,
            size.peak_mib,
            size.runs,
            size.min_mib,
            size.max_mib,
            size.events_per_sec,
            size.cpu_per_100k,
        );
    }
    let _ = writeln!(
        w,
        "ingestor against a sink refusing every request (400), default IngestorConfig \
         (capacity {}, max_retained {}, no on_failure, no dead-letter file); no input is \
         prebuilt, each event is built when tracked, so \"over input\" is over the RSS \
         before the ingestor started:",
        refused[0].median.capacity, refused[0].median.max_retained,
    );
    for size in &refused {
        let run = size.median;
        let _ = writeln!(
            w,
            "  N = {}: peak RSS {:.1} MiB, {} over input (the median of {} runs, {:.1} to {:.1}); \
             metrics.failed {}, metrics.unreported {}, report.undelivered_items() {} ({:.1} s)",
            run.n,
            run.memory.peak_mib(),
            mib_or_na(run.memory.over_input_mib()),
            size.runs,
            size.min_mib,
            size.max_mib,
            run.failed,
            run.unreported,
            run.undelivered_items,
            run.wall_secs,
        );
    }
    let _ = writeln!(
        w,
        "enqueue latency, N = {} track() calls, sink answering in {} ms, queue capacity {} \
         ({} delivered and {} queued when the last call returned): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        latency.n,
        settings.latency_delay_ms,
        latency.capacity,
        latency.delivered_after_tracking,
        latency.queued_after_tracking,
        latency.p50_us,
        latency.p99_us,
        latency.max_us,
    );

    for (policy, result) in [
        ("an fsync at most every 200 ms", &spool.interval),
        ("an fsync before track() returns", &spool.always),
    ] {
        let _ = writeln!(
            w,
            "spooled enqueue latency, {policy}, N = {}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            result.n, result.p50_us, result.p99_us, result.max_us,
        );
    }
    for run in &spool.outage {
        let _ = writeln!(
            w,
            "ingestor with a spool during an outage (every request 503), N = {}, capacity {}: \
             peak RSS {:.1} MiB, {:.1} MiB spooled on disk, {:.1} s",
            run.n,
            run.capacity,
            run.memory.peak_mib(),
            run.spooled_bytes as f64 / (1024.0 * 1024.0),
            run.wall_secs,
        );
    }

    // Each round runs every contender back to back, so a ratio within a
    // round is not skewed by the machine's drift between rounds (on a shared
    // 2-vCPU VM, run-to-run spread is ±25%); the median of those is reported.
    let ratios: Vec<(Contender, f64, f64)> = Contender::ALL
        .into_iter()
        .filter_map(|contender| {
            let target = contender.ratio_target()?;
            Some((
                contender,
                paired_ratio(runs, contender, Contender::Baseline),
                target,
            ))
        })
        .collect();
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "ratios: median over the rounds of events/s divided by the baseline's in the same round"
    );
    for &(contender, ratio, target) in &ratios {
        let _ = writeln!(
            w,
            "target: {contender}/baseline >= {target}: {}",
            verdict(ratio >= target)
        );
    }
    let (burst, ext) = (row(Contender::IngestorBurst), row(Contender::Ext));
    let _ = writeln!(
        w,
        "target: ingestor-burst peak RSS within 10% of ext: {} ({:.1} vs {:.1} MiB)",
        verdict(within_10_percent(burst.peak_mib, ext.peak_mib)),
        burst.peak_mib,
        ext.peak_mib,
    );
    let _ = writeln!(
        w,
        "target: enqueue p99 < 10 µs: {}",
        verdict(latency.p99_us < 10.0)
    );
    let rss_verdict = match (ingestor.over_input_mib, big.over_input_mib) {
        (Some(small), Some(large)) => {
            let same = (large - small).abs() <= (0.1 * small).max(2.0);
            format!(
                "{} ({small:.1} vs {large:.1} MiB; same = within 2 MiB or 10%)",
                verdict(same)
            )
        }
        _ => "not measured (clear_refs failed)".to_owned(),
    };
    let _ = writeln!(
        w,
        "target: ingestor peak over input the same at N = {} and N = {big_n}: {rss_verdict}",
        settings.n
    );
    let cli_ratio = paired_ratio(runs, Contender::Cli, Contender::Ext);
    let _ = writeln!(
        w,
        "target: cli/ext >= {}: {} (median over the rounds of cli's events/s divided by ext's)",
        crate::contenders::CLI_TARGET,
        verdict(cli_ratio >= crate::contenders::CLI_TARGET),
    );
    // Compared by the highest of each size's runs: a short run does not
    // always reach the plateau a long one stays on, so its median can sit
    // below a peak that the same input size does reach.
    if cli_memory.iter().all(|size| size.runs > 0) {
        let [small, large] = &cli_memory;
        let _ = writeln!(
            w,
            "target: cli peak RSS the same at N = {} and N = {} lines: {} ({:.1} vs {:.1} MiB, \
             the highest of each size's runs; same = within 10%)",
            small.n,
            large.n,
            verdict(within_10_percent(large.max_mib, small.max_mib)),
            small.max_mib,
            large.max_mib,
        );
    }
    let e2e_ratio = paired_ratio(runs, Contender::ExtE2e, Contender::BaselineE2e);
    let _ = writeln!(
        w,
        "target: ext-e2e/baseline-e2e >= {}: {} (median over the rounds of ext-e2e's events/s \
         divided by baseline-e2e's; both build each event inside the timed section)",
        crate::contenders::E2E_TARGET,
        verdict(e2e_ratio >= crate::contenders::E2E_TARGET),
    );
    let [small, large] = refused.each_ref().map(|size| size.median.memory.peak_mib());
    let _ = writeln!(
        w,
        "target: ingestor peak RSS when every request fails, {} vs {}: {} ({small:.1} vs {large:.1} MiB, \
         the median run of each size; same = within 10%)",
        refused[0].median.n,
        refused[1].median.n,
        verdict(within_10_percent(large, small)),
    );
    let _ = writeln!(
        w,
        "target: spool enqueue p99 < {SPOOL_P99_TARGET_US} µs with the interval policy: {} ({:.1} µs; {:.1} µs with an fsync before return)",
        verdict(spool.interval.p99_us < SPOOL_P99_TARGET_US),
        spool.interval.p99_us,
        spool.always.p99_us,
    );
    let [small, large] = spool.outage.each_ref().map(|run| run.memory.peak_mib());
    let _ = writeln!(
        w,
        "target: spooled ingestor peak RSS during an outage, {} vs {} items in the spool: {} ({small:.1} vs {large:.1} MiB; same = within 10%)",
        spool.outage[0].n,
        spool.outage[1].n,
        verdict(within_10_percent(large, small)),
    );
    for &(contender, ratio, _) in &ratios {
        let _ = writeln!(w, "ratio {contender}/baseline: {ratio:.2}");
    }
    let _ = writeln!(w, "ratio cli/ext: {cli_ratio:.2}");
    let _ = writeln!(w, "ratio ext-e2e/baseline-e2e: {e2e_ratio:.2}");
    let _ = writeln!(w, "enqueue p99 us: {:.1}", latency.p99_us);
    let _ = writeln!(w, "spool enqueue p99 us: {:.1}", spool.interval.p99_us);
    let _ = writeln!(
        w,
        "spool enqueue p99 us (fsync before return): {:.1}",
        spool.always.p99_us
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn within_10_percent_either_way() {
        assert!(within_10_percent(110.0, 100.0));
        assert!(within_10_percent(90.0, 100.0));
        assert!(!within_10_percent(110.5, 100.0));
        assert!(!within_10_percent(89.5, 100.0));
    }

    fn run(contender: Contender, events_per_sec: f64) -> RunResult {
        RunResult {
            contender: contender.name().to_owned(),
            n: 1000,
            wall_secs: 1000.0 / events_per_sec,
            cpu_secs: 0.1,
            memory: Memory {
                peak_rss_kib: 1024,
                input_rss_kib: 512,
                peak_after_input_kib: 1024,
                peak_reset: true,
            },
            sink: Stats::default(),
        }
    }

    /// The end-to-end pair is compared with each other, not with the
    /// baseline, and has a target line and a ratio line of its own.
    #[test]
    fn the_end_to_end_pair_prints_its_own_ratio() {
        let rate = |c: Contender| match c {
            Contender::BaselineE2e => 200.0,
            Contender::ExtE2e => 170.0,
            _ => 100.0,
        };
        let runs: Vec<RunResult> = Contender::ALL
            .into_iter()
            .map(|c| run(c, rate(c)))
            .collect();
        let settings = Settings {
            n: 1000,
            rounds: 1,
            rss_n: 1000,
            latency_n: 10,
            latency_delay_ms: 200,
            refused_n: [10, 20],
            cli_rss_n: [10, 20],
            outage_n: [10, 20],
        };
        let refused = [10, 20].map(|n| {
            [30.0, 40.0, 31.0]
                .map(|mib| RefusedResult {
                    n,
                    capacity: 10,
                    max_retained: 10,
                    wall_secs: 1.0,
                    memory: Memory {
                        peak_rss_kib: (mib * 1024.0) as u64 + n,
                        ..run(Contender::Ingestor, 1.0).memory
                    },
                    failed: n,
                    unreported: 0,
                    undelivered_items: 0,
                    sink: Stats::default(),
                })
                .to_vec()
        });
        let latency = LatencyResult {
            n: 10,
            capacity: 10,
            p50_us: 1.0,
            p99_us: 2.0,
            max_us: 3.0,
            delivered_after_tracking: 0,
            queued_after_tracking: 10,
        };
        let cli = CliRuns {
            memory: &[],
            cp949: &[],
        };
        let spool = SpoolFigures {
            interval: LatencyResult {
                p99_us: 900.0,
                ..latency.clone()
            },
            always: LatencyResult {
                p99_us: 4000.0,
                ..latency.clone()
            },
            outage: [(10, 30.0), (20, 34.0)].map(|(n, mib)| OutageResult {
                n,
                capacity: 10,
                wall_secs: 1.0,
                memory: Memory {
                    peak_rss_kib: (mib * 1024.0) as u64,
                    ..run(Contender::Ingestor, 1.0).memory
                },
                spooled_bytes: n * 300,
            }),
        };
        let ingestion = Ingestion {
            refused: &refused,
            latency: &latency,
            spool: &spool,
        };
        let text = render(&settings, "m", &runs, &[], cli, ingestion);
        assert!(
            text.contains("ratio ext-e2e/baseline-e2e: 0.85\n"),
            "{text}"
        );
        assert!(text.contains("spool enqueue p99 us: 900.0\n"), "{text}");
        assert!(
            text.contains("spool enqueue p99 us (fsync before return): 4000.0\n"),
            "{text}"
        );
        assert!(
            text.contains("target: spool enqueue p99 < 1000 µs with the interval policy: met"),
            "{text}"
        );
        assert!(
            text.contains("10 vs 20 items in the spool: MISSED (30.0 vs 34.0 MiB"),
            "{text}"
        );
        assert!(
            text.contains("target: ext-e2e/baseline-e2e >= 0.9: MISSED"),
            "{text}"
        );
        assert!(!text.contains("ratio ext-e2e/baseline:"), "{text}");
        assert!(!text.contains("ratio baseline-e2e/baseline:"), "{text}");
        assert!(text.contains("| ext-e2e | 170 |"), "{text}");
        // Each refused size is its median run (31 MiB, not the 40 MiB one).
        assert!(
            text.contains("N = 10: peak RSS 31.0 MiB")
                && text.contains("(the median of 3 runs, 30.0 to 40.0)"),
            "{text}"
        );
        assert!(
            text.contains("10 vs 20: met (31.0 vs 31.0 MiB, the median run of each size"),
            "{text}"
        );
    }

    /// Ratios pair each contender with the baseline of its own round,
    /// whichever order the round ran in.
    #[test]
    fn ratios_are_paired_within_rounds() {
        let mut runs = Vec::new();
        for (round, baseline) in [100.0, 200.0, 400.0].into_iter().enumerate() {
            let mut round_runs: Vec<RunResult> = Contender::ALL
                .into_iter()
                .map(|c| {
                    run(
                        c,
                        if c == Contender::Baseline {
                            baseline
                        } else {
                            baseline * 0.9
                        },
                    )
                })
                .collect();
            round_runs.rotate_left(round % Contender::ALL.len());
            runs.extend(round_runs);
        }
        for contender in Contender::ALL {
            let expected = if contender == Contender::Baseline {
                1.0
            } else {
                0.9
            };
            let ratio = paired_ratio(&runs, contender, Contender::Baseline);
            assert!((ratio - expected).abs() < 1e-9);
        }
    }
}
