//! The `cli` contender: the `marketap` binary importing a prebuilt NDJSON
//! file of the benchmark's events into the sink. The file is written (once
//! per size, streamed, in the API's wire shape) before the clock starts;
//! the clock covers the whole process, from spawn to exit. Its CPU time is
//! what this process's reaped children used (`cutime + cstime`), and its
//! peak RSS is the child's `VmHWM`, read while it runs.
//!
//! `cli-cp949` imports the same events with Korean product names, written
//! in CP949 (as Korean Excel saves text), with `--encoding cp949`: what
//! decoding costs, where UTF-8 input is read as it is.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use crate::{
    BoxError,
    contenders::{BATCH, IN_FLIGHT, ext_event},
    events::{self, API_KEY, PROJECT_ID},
    measure::{self, Memory},
    report::RunResult,
    sink::{SinkClient, loopback_url},
};

/// Where the inputs are kept between runs: removed by the orchestrator.
pub fn input_dir() -> PathBuf {
    std::env::temp_dir().join("marketap-bench-cli")
}

/// The `marketap` binary, built beside this one (`cargo xtask bench` builds
/// both in release mode).
fn binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(format!("marketap{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p marketap-cli` (`cargo xtask \
             bench` does)",
            path.display()
        )
        .into())
    }
}

/// The products' names in Korean, for the CP949 input.
const KOREAN: [(&str, &str); 8] = [
    ("Organic Cotton T-Shirt", "유기농 면 티셔츠"),
    (
        "Wireless Noise-Cancelling Headphones",
        "무선 노이즈캔슬링 헤드폰",
    ),
    ("Ceramic Pour-Over Coffee Set", "세라믹 핸드드립 커피 세트"),
    ("Vitamin C Brightening Serum", "비타민C 브라이트닝 세럼"),
    ("Trail Running Shoes", "트레일 러닝화"),
    (
        "Stainless Steel Water Bottle 750ml",
        "스테인리스 물병 750ml",
    ),
    ("Hardcover Notebook, Dotted", "하드커버 도트 노트"),
    ("Kids' Wooden Building Blocks", "어린이 원목 블록"),
];

/// The NDJSON file of the first `n` events, written now if it is not
/// there: UTF-8, or (`cp949`) CP949 with Korean product names.
fn input(n: usize, cp949: bool) -> Result<PathBuf, BoxError> {
    let dir = input_dir();
    std::fs::create_dir_all(&dir)?;
    let name = if cp949 {
        format!("events-{n}.cp949.ndjson")
    } else {
        format!("events-{n}.ndjson")
    };
    let path = dir.join(&name);
    if !path.exists() {
        let partial = dir.join(format!("{name}.partial"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial)?);
        for mut spec in events::generate(n) {
            if cp949 {
                spec.product_name = KOREAN
                    .iter()
                    .find(|(english, _)| *english == spec.product_name)
                    .map_or(spec.product_name, |(_, korean)| korean);
                let mut line = serde_json::to_string(&ext_event(spec))?;
                line.push('\n');
                let (bytes, _, unmappable) = encoding_rs::EUC_KR.encode(&line);
                if unmappable {
                    return Err("a product name has no CP949 form".into());
                }
                out.write_all(&bytes)?;
                continue;
            }
            serde_json::to_writer(&mut out, &ext_event(spec))?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(path)
}

/// Imports `n` events with `marketap` into the sink at `url` (from the
/// CP949 input if `cp949`), and measures it. Fails unless the CLI exits 0
/// and the sink counts exactly `n` items.
pub fn run(n: usize, url: &str, cp949: bool) -> Result<RunResult, BoxError> {
    let url = loopback_url(url)?;
    let binary = binary()?;
    let input = input(n, cp949)?;
    let encoding = if cp949 { "cp949" } else { "utf-8" };
    let checkpoint = input_dir().join(format!("checkpoint-{}", std::process::id()));
    let sink_runtime = crate::runtime()?;
    let sink = SinkClient::new(&url)?;
    sink_runtime.block_on(sink.reset())?;

    let cpu_before = measure::children_usage()?.cpu;
    let started = Instant::now();
    let child = Command::new(&binary)
        .args(["import", "events"])
        .arg(&input)
        .args(["--encoding", encoding])
        .args(["--quiet", "--output", "json", "--restart", "--checkpoint"])
        .arg(&checkpoint)
        .args([
            "--batch-size",
            &BATCH.to_string(),
            "--in-flight",
            &IN_FLIGHT.to_string(),
        ])
        .env("MARKETAP_API_KEY", API_KEY)
        .env("MARKETAP_PROJECT_ID", PROJECT_ID)
        .env("MARKETAP_BASE_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let output = child.wait_with_output()?;
    let wall = started.elapsed();
    // This process (one `run`) has no other child: the largest is marketap.
    let usage = measure::children_usage()?;
    let (cpu, peak_kib) = (usage.cpu.saturating_sub(cpu_before), usage.peak_rss_kib);
    let _ = std::fs::remove_file(&checkpoint);
    if !output.status.success() {
        return Err(format!(
            "marketap exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        )
        .into());
    }
    let stats = sink_runtime.block_on(sink.stats())?;
    stats.expect_items(n)?;
    Ok(RunResult {
        contender: if cp949 { "cli-cp949" } else { "cli" }.to_owned(),
        n: n as u64,
        wall_secs: wall.as_secs_f64(),
        cpu_secs: cpu.as_secs_f64(),
        memory: Memory {
            peak_rss_kib: peak_kib,
            input_rss_kib: 0,
            peak_after_input_kib: peak_kib,
            // The input is a file, not memory: nothing to be "over".
            peak_reset: false,
        },
        sink: stats,
    })
}

/// Removes the prebuilt inputs.
pub fn clean_up() {
    let _ = std::fs::remove_dir_all(input_dir());
}
