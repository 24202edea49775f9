//! Readings from `/proc`: CPU time of the whole process, resident memory
//! (now, at its peak, and the peak since the input was built), and a
//! description of the machine; and from `getrusage`, what a child process
//! used (its CPU time and exact peak RSS).

use std::{
    collections::BTreeMap,
    fs,
    time::{Duration, Instant},
};

use nix::sys::{
    resource::{UsageWho, getrusage},
    time::TimeVal,
};
use serde::{Deserialize, Serialize};

use crate::BoxError;

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

/// What this process's children that have been waited for used, from
/// `getrusage(RUSAGE_CHILDREN)`.
pub struct ChildrenUsage {
    /// User and system CPU time, all children together.
    pub cpu: Duration,
    /// The peak RSS of the largest child, KiB: exact, as the kernel kept
    /// it until the child exited (a reading of `VmHWM` while it runs can
    /// miss a peak in its last moments).
    pub peak_rss_kib: u64,
}

pub fn children_usage() -> Result<ChildrenUsage, BoxError> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let time = |t: TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(ChildrenUsage {
        cpu: time(usage.user_time()) + time(usage.system_time()),
        peak_rss_kib: usage.max_rss().max(0) as u64,
    })
}

/// A line of `/proc/self/status` in KiB, e.g. `VmRSS` or `VmHWM`; 0 if it
/// cannot be read.
pub fn status_kib(key: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
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
