//! Readings from `/proc`: CPU time of the whole process (and of its
//! children), resident memory (now, at its peak, the peak since the input
//! was built, and a child's peak), and a description of the machine.

use std::{
    collections::BTreeMap,
    fs,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

const KIB_PER_MIB: f64 = 1024.0;

/// `USER_HZ`: the unit of `utime` and `stime` in `/proc/<pid>/stat`, 100 on
/// every Linux ABI.
const TICKS_PER_SECOND: u64 = 100;

/// Wall-clock and CPU time from a starting point.
pub struct Clock {
    wall: Instant,
    cpu: CpuSample,
}

impl Clock {
    pub fn start() -> Self {
        let cpu = CpuSample::now();
        Self {
            wall: Instant::now(),
            cpu,
        }
    }

    /// Wall-clock and CPU time (all threads) since [`start`](Self::start).
    pub fn stop(&self) -> (Duration, Duration) {
        let wall = self.wall.elapsed();
        (wall, CpuSample::now().since(&self.cpu))
    }
}

/// CPU time per thread in nanoseconds, from `/proc/self/task/*/schedstat`
/// (`/proc/self/schedstat` covers the main thread only), and the whole
/// process's in clock ticks from `/proc/self/stat`, which also counts
/// threads that have exited but only to 10 ms.
struct CpuSample {
    threads: BTreeMap<u32, u64>,
    ticks: u64,
}

impl CpuSample {
    fn now() -> Self {
        let mut threads = BTreeMap::new();
        for entry in fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let tid = entry.file_name().to_str().and_then(|s| s.parse().ok());
            let nanos = fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let (Some(tid), Some(nanos)) = (tid, nanos) {
                threads.insert(tid, nanos);
            }
        }
        Self {
            threads,
            ticks: stat_ticks().unwrap_or(0),
        }
    }

    /// The nanosecond sum when every earlier thread is still there (new
    /// ones count from zero), else the tick count.
    fn since(&self, earlier: &Self) -> Duration {
        let precise = !earlier.threads.is_empty()
            && earlier
                .threads
                .keys()
                .all(|tid| self.threads.contains_key(tid));
        if precise {
            let nanos = self
                .threads
                .iter()
                .map(|(tid, ns)| ns.saturating_sub(earlier.threads.get(tid).copied().unwrap_or(0)))
                .sum();
            Duration::from_nanos(nanos)
        } else {
            let ticks = self.ticks.saturating_sub(earlier.ticks);
            Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
        }
    }
}

/// `utime + stime` of the process, in clock ticks.
fn stat_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: the first is field 3 (state); utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of this process's children that have been waited for
/// (`cutime + cstime`, fields 16 and 17 of `/proc/self/stat`), to 10 ms.
pub fn children_cpu() -> Duration {
    let ticks = || -> Option<u64> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(13);
        let cutime: u64 = fields.next()?.parse().ok()?;
        let cstime: u64 = fields.next()?.parse().ok()?;
        Some(cutime + cstime)
    };
    Duration::from_millis(ticks().unwrap_or(0) * 1000 / TICKS_PER_SECOND)
}

/// The peak RSS (`VmHWM`) of process `pid` in KiB, read every 5 ms until
/// `done` says it has ended: the last reading before it exits.
pub fn watch_peak_rss(pid: u32, mut done: impl FnMut() -> bool) -> u64 {
    let path = format!("/proc/{pid}/status");
    let mut peak = 0;
    loop {
        peak = peak.max(status_kib_of(&path, "VmHWM"));
        if done() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A line of `/proc/self/status` in KiB, e.g. `VmRSS` or `VmHWM`.
pub fn status_kib(key: &str) -> u64 {
    status_kib_of("/proc/self/status", key)
}

/// A line of a `/proc/<pid>/status` file in KiB; 0 if it cannot be read.
fn status_kib_of(path: &str, key: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                value.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Memory once the input is built, before the run; [`peak`](Self::peak)
/// after it.
#[derive(Debug, Clone, Copy)]
pub struct InputMark {
    /// Peak RSS so far (building the input included), KiB.
    pub peak_before_kib: u64,
    /// RSS with the input in memory, KiB.
    pub input_kib: u64,
    /// Whether the peak was reset to `input_kib`, so that a later
    /// [`status_kib("VmHWM")`](status_kib) is the peak of the run alone.
    pub peak_reset: bool,
}

impl InputMark {
    /// Records the peak so far, then resets it to the current RSS by
    /// writing 5 to `/proc/self/clear_refs`.
    pub fn take() -> Self {
        let peak_before_kib = status_kib("VmHWM");
        let written = fs::write("/proc/self/clear_refs", "5").is_ok();
        let input_kib = status_kib("VmRSS");
        // After a reset the peak is the RSS of that moment, give or take
        // the pages touched since.
        let peak_reset = written && status_kib("VmHWM") <= input_kib + 256;
        Self {
            peak_before_kib,
            input_kib,
            peak_reset,
        }
    }

    /// The run's memory, read now that it is over.
    pub fn peak(&self) -> Memory {
        let peak_after_input_kib = status_kib("VmHWM");
        Memory {
            peak_rss_kib: self.peak_before_kib.max(peak_after_input_kib),
            input_rss_kib: self.input_kib,
            peak_after_input_kib,
            peak_reset: self.peak_reset,
        }
    }
}

/// A run's resident memory.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Memory {
    /// Peak RSS of the process over its life, KiB.
    pub peak_rss_kib: u64,
    /// RSS with the input built, KiB.
    pub input_rss_kib: u64,
    /// Peak RSS from the moment the input was built, KiB.
    pub peak_after_input_kib: u64,
    /// Whether the peak could be reset once the input was built; if not,
    /// `peak_after_input_kib` may be the peak of building it.
    pub peak_reset: bool,
}

impl Memory {
    pub fn peak_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / KIB_PER_MIB
    }

    /// Peak RSS above the input, the memory of sending itself.
    pub fn over_input_mib(&self) -> Option<f64> {
        self.peak_reset.then(|| {
            self.peak_after_input_kib.saturating_sub(self.input_rss_kib) as f64 / KIB_PER_MIB
        })
    }
}

/// The machine: CPU model, logical CPUs, memory and kernel.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo.lines().find_map(|line| {
                let kib: u64 = line
                    .strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB RAM", kib as f64 / (1024.0 * 1024.0)))
            })
        })
        .unwrap_or_else(|| "unknown RAM".to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("Linux {}", release.trim()))
        .unwrap_or_else(|_| "unknown kernel".to_owned());
    format!("{model}, {cpus} logical CPUs, {memory}, {kernel}")
}
