//! `marketap-bench`: throughput, CPU time, memory and enqueue latency of the
//! Marketap SDK against a loopback sink. Run it with `cargo xtask bench`;
//! it is no part of `cargo test`.
//!
//! One binary plays every part, so that each contender runs in a process of
//! its own (peak RSS and CPU time are per process, and the sink's work is
//! never charged to a client):
//! - `marketap-bench [--n N] [--rounds R] [--rss-n M] [--cli-rss-n C,D]
//!   [--refused-n A,B] [--latency-n L] [--outage-n E,F] [--quick]`
//!   orchestrates: starts a sink, runs each contender `R` times in turn,
//!   the ingestor once more at `M` events, the CLI at `C` and `D` lines,
//!   the ingestor at `A` and `B` events against a sink refusing
//!   everything, the latency test against a slow sink (without a spool and
//!   with each sync policy), the spooled ingestor at `E` and `F` events
//!   during an outage, and prints the report.
//! - `marketap-bench sink --delay-ms D [--refuse | --unavailable]`: the
//!   sink ([`sink`]).
//! - `marketap-bench run <contender> --n N --url URL`: one run
//!   ([`contenders`]), printed as one JSON line.
//! - `marketap-bench refused --n N --url URL`: one refused run.
//! - `marketap-bench latency --n N --url URL [--spool-interval |
//!   --spool-always]`: the enqueue-latency test.
//! - `marketap-bench outage --n N --url URL`: one spooled outage run.
//!
//! Every `--url` must be a loopback address ([`sink::loopback_url`]).

mod build;
mod cli;
mod contenders;
mod events;
mod measure;
mod report;
mod sink;

use std::{
    collections::BTreeMap,
    process::{Command, ExitCode, Stdio},
    str::FromStr,
    time::Duration,
};

use marketap_ext::spool::SyncPolicy;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    contenders::Contender,
    report::{
        Ingestion, LatencyResult, OutageResult, RefusedResult, RunResult, Settings, SpoolFigures,
    },
    sink::{Answer, SinkProcess},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tokio workers in every process: the benchmark machine has two cores.
pub const WORKER_THREADS: usize = 2;

/// How slowly the sink answers in the latency test.
const LATENCY_DELAY: Duration = Duration::from_millis(200);

const USAGE: &str = "\
usage: marketap-bench [--n N] [--rounds R] [--rss-n M] [--cli-rss-n C,D] [--refused-n A,B]
                      [--latency-n L] [--outage-n E,F] [--quick]

  --n N            events per run (default 200000)
  --rounds R       runs of each contender, alternating; medians are reported (default 9)
  --rss-n M        events of the extra ingestor runs for the memory comparison (default 1000000)
  --cli-rss-n C,D  lines of the two CLI runs for its memory comparison (default 100000,5000000)
  --refused-n A,B  events of the two ingestor runs against a sink refusing every request
                   (default 100000,1000000)
  --latency-n L    track() calls timed against a sink answering in 200 ms (default 50000)
  --outage-n E,F   events of the two spooled ingestor runs against a sink answering every
                   request 503 (default 100000,1000000)
  --quick          a smoke run: N 20000, 1 round, M 100000, C,D 100000,1000000,
                   A,B 50000,200000, L 5000, E,F 20000,100000 (flags still override)

Each round runs the nine contenders (baseline, raw, ext, ingestor, ingestor-burst, cli,
baseline-e2e, ext-e2e, ingestor-spool) in turn, starting one further along each time; the two e2e ones
build each event inside the timed section, the others before it; then the ingestor runs min(R, 3)
times at M events; then the CLI once at C and once at D lines; then the ingestor
once at A and once at B events against a sink that answers every request 400; then
the latency test, without a spool and with each sync policy; then the spooled ingestor
once at E and once at F events against a sink that answers every request 503, its
spool (in a temp directory, removed after) growing while memory stays at capacity. The cli contender runs target/release/marketap, which `cargo xtask
bench` builds; its NDJSON inputs are written to a temp directory first, and removed
at the end.

Then the build section: each way of building an event (a raw struct, Event::builder,
Event::purchase with two products, Event::from_raw, and that purchase written by hand)
timed min(N, 20000) events a round, R rounds, in each of four processes of its own (where a
process's stack and heap land moves the figures); `marketap-bench build --print [--n N]
[--rounds R]` runs only that section.

internal: marketap-bench sink --delay-ms D [--refuse]
          marketap-bench run <baseline|raw|ext|ingestor|ingestor-burst|cli|baseline-e2e|ext-e2e>
                               --n N --url URL
          marketap-bench refused --n N --url URL
          marketap-bench build [--n N] [--rounds R]
          marketap-bench latency --n N --url URL
          (every URL must be loopback: http://127.x.y.z:<port> or http://[::1]:<port>)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("sink") => Flags::parse(&args[1..], &["delay-ms"], &["refuse", "unavailable"])
            .and_then(|mut flags| {
                let delay = flags.take("delay-ms", 0)?;
                let answer = match (flags.switch("refuse"), flags.switch("unavailable")) {
                    (true, _) => Answer::Refuse,
                    (_, true) => Answer::Unavailable,
                    _ => Answer::Accept,
                };
                flags.finish()?;
                sink::serve(Duration::from_millis(delay), answer)
            }),
        Some("run") => run_one(&args[1..]),
        Some("build") => {
            Flags::parse(&args[1..], &["n", "rounds"], &["print"]).and_then(|mut flags| {
                let (n, rounds) = (flags.take("n", 20_000)?, flags.take("rounds", 9)?);
                let print = flags.switch("print");
                flags.finish()?;
                if n == 0 || rounds == 0 {
                    return Err("build: --n and --rounds must be at least 1".into());
                }
                if print {
                    print!("{}", build::render(&build_section(n, rounds)?));
                    Ok(())
                } else {
                    print_json(&build::run(n, rounds))
                }
            })
        }
        Some("refused") => Flags::parse(&args[1..], &["n", "url"], &[]).and_then(|mut flags| {
            let (n, url) = (flags.take("n", 100_000)?, flags.url()?);
            flags.finish()?;
            print_json(&contenders::refused(n, &url)?)
        }),
        Some("latency") => Flags::parse(
            &args[1..],
            &["n", "url"],
            &["spool-interval", "spool-always"],
        )
        .and_then(|mut flags| {
            let (n, url) = (flags.take("n", 50_000)?, flags.url()?);
            let spool = match (flags.switch("spool-interval"), flags.switch("spool-always")) {
                (true, _) => Some(SyncPolicy::default()),
                (_, true) => Some(SyncPolicy::Always),
                _ => None,
            };
            flags.finish()?;
            print_json(&contenders::latency(n, &url, spool)?)
        }),
        Some("outage") => Flags::parse(&args[1..], &["n", "url"], &[]).and_then(|mut flags| {
            let (n, url) = (flags.take("n", 100_000)?, flags.url()?);
            flags.finish()?;
            print_json(&contenders::outage(n, &url)?)
        }),
        _ => orchestrate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-thread runtime every process runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
}

fn run_one(args: &[String]) -> Result<(), BoxError> {
    let names = || Contender::ALL.map(Contender::name).join(", ");
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| format!("run: which contender? {}", names()))?;
    let contender = Contender::from_name(name)
        .ok_or_else(|| format!("run: unknown contender `{name}`; one of {}", names()))?;
    let mut flags = Flags::parse(rest, &["n", "url"], &[])?;
    let (n, url) = (flags.take("n", 200_000)?, flags.url()?);
    flags.finish()?;
    print_json(&contenders::run(contender, n, &url)?)
}

fn print_json(value: &impl Serialize) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn orchestrate(args: &[String]) -> Result<(), BoxError> {
    let mut flags = Flags::parse(
        args,
        &[
            "n",
            "rounds",
            "rss-n",
            "cli-rss-n",
            "refused-n",
            "latency-n",
            "outage-n",
        ],
        &["quick"],
    )?;
    let quick = flags.switch("quick");
    let settings = Settings {
        n: flags.take("n", if quick { 20_000 } else { 200_000 })?,
        // Nine, not three: on this shared 2-core VM the same run's CPU time
        // varies by 20-70% from one process to the next, so the medians need
        // the samples; a full run still takes about a minute.
        rounds: flags.take("rounds", if quick { 1 } else { 9 })?,
        rss_n: flags.take("rss-n", if quick { 100_000 } else { 1_000_000 })?,
        latency_n: flags.take("latency-n", if quick { 5_000 } else { 50_000 })?,
        cli_rss_n: flags
            .take(
                "cli-rss-n",
                if quick {
                    Pair([100_000, 1_000_000])
                } else {
                    Pair([100_000, 5_000_000])
                },
            )?
            .0,
        latency_delay_ms: LATENCY_DELAY.as_millis() as u64,
        refused_n: flags
            .take(
                "refused-n",
                // Both well past capacity plus max_retained (20,000): the
                // peak still climbs up to about 50,000 events (28 MiB at
                // 20,000, 40 MiB at 50,000 on the benchmark VM), then
                // stays flat (42 MiB at 10,000,000).
                if quick {
                    Pair([50_000, 200_000])
                } else {
                    Pair([100_000, 1_000_000])
                },
            )?
            .0,
        outage_n: flags
            .take(
                "outage-n",
                if quick {
                    Pair([20_000, 100_000])
                } else {
                    Pair([100_000, 1_000_000])
                },
            )?
            .0,
    };
    flags.finish()?;
    let counts = [
        settings.n,
        settings.rounds,
        settings.rss_n,
        settings.latency_n,
    ];
    if counts
        .into_iter()
        .chain(settings.refused_n)
        .chain(settings.cli_rss_n)
        .chain(settings.outage_n)
        .any(|count| count == 0)
    {
        return Err(
            "--n, --rounds, --rss-n, --cli-rss-n, --refused-n, --latency-n and --outage-n must be at least 1"
                .into(),
        );
    }
    let machine = measure::machine();
    eprintln!("machine: {machine}");

    let sink = SinkProcess::start(Duration::ZERO, Answer::Accept)?;
    let run = |contender: Contender, n: usize| -> Result<RunResult, BoxError> {
        let n = n.to_string();
        child(&["run", contender.name(), "--n", &n, "--url", &sink.url])
    };
    let mut runs = Vec::new();
    for round in 0..settings.rounds {
        // Rotated, so that no contender always runs first or after the same one.
        for i in 0..Contender::ALL.len() {
            let contender = Contender::ALL[(round + i) % Contender::ALL.len()];
            let result = run(contender, settings.n)?;
            eprintln!(
                "round {}/{}: {contender:<14} {}",
                round + 1,
                settings.rounds,
                result.summary()
            );
            runs.push(result);
        }
    }
    let mut big_runs = Vec::new();
    for _ in 0..settings.rounds.min(3) {
        let result = run(Contender::Ingestor, settings.rss_n)?;
        eprintln!("ingestor, N = {}: {}", settings.rss_n, result.summary());
        big_runs.push(result);
    }
    // A single run's peak varies by several MiB (thread timing decides how
    // many buffers are alive at once), so each size is the median of runs.
    let mut cli_runs = Vec::new();
    for n in settings.cli_rss_n {
        for _ in 0..settings.rounds.min(3) {
            let result = run(Contender::Cli, n)?;
            eprintln!("cli, N = {n}: {}", result.summary());
            cli_runs.push(result);
        }
    }
    // CP949 decoding, a figure of its own: the same events with Korean
    // product names, in CP949.
    let mut cp949_runs = Vec::new();
    for _ in 0..settings.rounds.min(3) {
        let result = run(Contender::CliCp949, settings.n)?;
        eprintln!("cli-cp949, N = {}: {}", settings.n, result.summary());
        cp949_runs.push(result);
    }
    cli::clean_up();
    drop(sink);

    let refusing = SinkProcess::start(Duration::ZERO, Answer::Refuse)?;
    let refused_run = |n: usize| -> Result<RefusedResult, BoxError> {
        let n = n.to_string();
        let result: RefusedResult = child(&["refused", "--n", &n, "--url", &refusing.url])?;
        eprintln!(
            "ingestor, every request refused, N = {n}: peak RSS {:.1} MiB, {} failed",
            result.memory.peak_mib(),
            result.failed
        );
        Ok(result)
    };
    // Each size's peak is the median of runs, as the other memory figures.
    let refused_runs = |n: usize| -> Result<Vec<RefusedResult>, BoxError> {
        (0..settings.rounds.min(3))
            .map(|_| refused_run(n))
            .collect()
    };
    let [small, large] = settings.refused_n;
    let refused = [refused_runs(small)?, refused_runs(large)?];
    drop(refusing);

    let built = build_section(settings.n.min(20_000), settings.rounds)?;

    let slow = SinkProcess::start(LATENCY_DELAY, Answer::Accept)?;
    let latency_n = settings.latency_n.to_string();
    let latency: LatencyResult = child(&["latency", "--n", &latency_n, "--url", &slow.url])?;
    let spooled = |policy: &str| -> Result<LatencyResult, BoxError> {
        child(&["latency", "--n", &latency_n, "--url", &slow.url, policy])
    };
    let (interval, always) = (spooled("--spool-interval")?, spooled("--spool-always")?);
    drop(slow);

    let unavailable = SinkProcess::start(Duration::ZERO, Answer::Unavailable)?;
    let outage_run = |n: usize| -> Result<OutageResult, BoxError> {
        let n = n.to_string();
        let result: OutageResult = child(&["outage", "--n", &n, "--url", &unavailable.url])?;
        eprintln!(
            "ingestor with a spool during an outage, N = {n}: peak RSS {:.1} MiB",
            result.memory.peak_mib()
        );
        Ok(result)
    };
    let [small, large] = settings.outage_n;
    let outage = [outage_run(small)?, outage_run(large)?];
    drop(unavailable);
    let spool = SpoolFigures {
        interval,
        always,
        outage,
    };

    print!(
        "{}",
        report::render(
            &settings,
            &machine,
            &runs,
            &big_runs,
            report::CliRuns {
                memory: &cli_runs,
                cp949: &cp949_runs,
            },
            Ingestion {
                refused: &refused,
                latency: &latency,
                spool: &spool,
            },
        )
    );
    print!("{}", build::render(&built));
    Ok(())
}

/// Runs this binary with `args` and reads the JSON line it prints last.
/// The build section: `rounds` rounds of `n` events in each of
/// [`build::PROCESSES`] processes, pooled.
fn build_section(n: usize, rounds: usize) -> Result<build::BuildResult, BoxError> {
    let (n, rounds) = (n.to_string(), rounds.to_string());
    let results = (0..build::PROCESSES)
        .map(|_| child(&["build", "--n", &n, "--rounds", &rounds]))
        .collect::<Result<_, _>>()?;
    Ok(build::BuildResult::pooled(results))
}

fn child<T: DeserializeOwned>(args: &[&str]) -> Result<T, BoxError> {
    let output = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "`marketap-bench {}` failed: {}",
            args.join(" "),
            output.status
        )
        .into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)?)
}

/// Two counts, written `A,B`.
struct Pair([usize; 2]);

impl FromStr for Pair {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, b) = s.split_once(',').ok_or(())?;
        let count = |s: &str| s.trim().parse().map_err(drop);
        Ok(Self([count(a)?, count(b)?]))
    }
}

/// `--name value` flags and bare `--switch`es, matched by hand.
struct Flags<'a> {
    values: BTreeMap<&'a str, &'a str>,
}

impl<'a> Flags<'a> {
    /// Reads `args`: each of `names` takes a value, each of `switches` none.
    fn parse(args: &'a [String], names: &[&str], switches: &[&str]) -> Result<Self, BoxError> {
        let mut values = BTreeMap::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{arg}`\n\n{USAGE}"))?;
            let value = if switches.contains(&name) {
                ""
            } else if names.contains(&name) {
                args.next()
                    .ok_or_else(|| format!("--{name} needs a value"))?
            } else {
                return Err(format!("unknown flag --{name}\n\n{USAGE}").into());
            };
            values.insert(name, value);
        }
        Ok(Self { values })
    }

    fn switch(&mut self, name: &str) -> bool {
        self.values.remove(name).is_some()
    }

    fn take<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, BoxError> {
        match self.values.remove(name) {
            Some(value) => value
                .parse()
                .map_err(|_| format!("--{name}: cannot read `{value}`").into()),
            None => Ok(default),
        }
    }

    fn require<T: FromStr>(&mut self, name: &str) -> Result<T, BoxError> {
        let value = self
            .values
            .remove(name)
            .ok_or_else(|| format!("--{name} is required"))?;
        value
            .parse()
            .map_err(|_| format!("--{name}: cannot read `{value}`").into())
    }

    /// `--url`, which must be a loopback address.
    fn url(&mut self) -> Result<String, BoxError> {
        sink::loopback_url(&self.require::<String>("url")?)
    }

    /// An error naming any flag nobody took.
    fn finish(self) -> Result<(), BoxError> {
        match self.values.keys().next() {
            Some(name) => Err(format!("--{name} does not apply here\n\n{USAGE}").into()),
            None => Ok(()),
        }
    }
}
