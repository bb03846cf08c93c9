//! The results of one benchmark run: medians, ratios, targets, and their
//! forms for people (text, a Markdown table for the README) and machines
//! (JSON).

use serde::Serialize;

use crate::domain_log::DomainStats;

/// A target and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub met: bool,
}

impl Target {
    pub fn new(what: impl Into<String>, met: bool) -> Target {
        Target {
            what: what.into(),
            met,
        }
    }

    pub fn verdict(&self) -> &'static str {
        if self.met {
            "met"
        } else {
            "NOT met"
        }
    }
}

/// Several runs of one figure and their median.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub runs: Vec<f64>,
    pub median: f64,
    /// The smallest: on a busy machine the run least disturbed by others.
    pub best: f64,
}

impl Series {
    /// `None` if there are no runs.
    pub fn new(runs: Vec<f64>) -> Option<Series> {
        let median = median(&runs)?;
        let best = runs
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::INFINITY, f64::min);
        Some(Series { runs, median, best })
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Boot: spawn to the `/init` marker, in seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Boot {
    pub rxen_s: Series,
    pub tcg_s: Series,
    /// TCG's time ÷ rxen's: how many times faster rxen booted.
    pub speedup_vs_tcg: f64,
    /// rxen's counters from the run with the median boot time.
    pub rxen_stats: Option<DomainStats>,
    /// In that run, the rxen process's time outside the domain's run (config,
    /// kernel loading and decompression, domain building, teardown).
    pub rxen_outside_domain_s: Option<f64>,
    pub targets: Vec<Target>,
}

/// The CPU loop, in seconds per run of `rounds` rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Cpu {
    pub rounds: u64,
    /// Wall time in the rxen guest.
    pub rxen_s: Series,
    /// The native process's CPU time: the baseline (its wall time on a busy
    /// machine also counts waiting for a CPU).
    pub native_s: Series,
    pub native_wall_s: Series,
    /// Wall time in the TCG guest.
    pub tcg_s: Series,
    /// Guest speed as a share of native: native time ÷ guest time × 100.
    pub rxen_pct_of_native: f64,
    pub tcg_pct_of_native: f64,
    /// The same from the best runs (least disturbed by a busy machine).
    pub rxen_pct_of_native_best: f64,
    pub targets: Vec<Target>,
}

/// The getppid loop, in µs per call.
#[derive(Clone, Debug, Serialize)]
pub struct Syscall {
    /// Wall time in the rxen guest.
    pub rxen_us: Series,
    /// The native process's CPU time per call: the baseline.
    pub native_us: Series,
    pub native_wall_us: Series,
    /// Wall time in the TCG guest.
    pub tcg_us: Series,
    /// Guest time per call ÷ native time per call.
    pub rxen_vs_native: f64,
    pub tcg_vs_native: f64,
}

/// Everything one `rxen-bench` invocation measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub unix_time: u64,
    pub host: Host,
    pub guest_kernel: String,
    pub guest_memory_mib: u32,
    pub boot: Option<Boot>,
    pub cpu: Option<Cpu>,
    pub syscall: Option<Syscall>,
    /// rxen's counters over the whole CPU/syscall guest's run.
    pub workload_rxen_stats: Option<DomainStats>,
}

/// The machine the figures come from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_average: String,
}

impl Host {
    pub fn probe() -> Host {
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Host {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (mem_kib as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease"),
            load_average: read("/proc/loadavg"),
        }
    }
}

fn secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

fn micros(us: f64) -> String {
    if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.3} µs")
    }
}

fn verdicts(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| format!("{}: {}", t.what, t.verdict()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Report {
    /// The README's table: one row per benchmark that ran.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| benchmark | rxen | baselines (same run) | ratio | target |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        if let Some(b) = &self.boot {
            s.push_str(&format!(
                "| boot: start to `/init` marker (median of {}) | {} | QEMU TCG {} | {:.2}× TCG's speed | {} |\n",
                b.rxen_s.runs.len(),
                secs(b.rxen_s.median),
                secs(b.tcg_s.median),
                b.speedup_vs_tcg,
                verdicts(&b.targets),
            ));
        }
        if let Some(c) = &self.cpu {
            s.push_str(&format!(
                "| CPU: user-space loop, {} M rounds (median of {}) | {} | native {} (CPU time); QEMU TCG {} ({:.0} % of native) | {:.1} % of native | {} |\n",
                c.rounds / 1_000_000,
                c.rxen_s.runs.len(),
                secs(c.rxen_s.median),
                secs(c.native_s.median),
                secs(c.tcg_s.median),
                c.tcg_pct_of_native,
                c.rxen_pct_of_native,
                verdicts(&c.targets),
            ));
        }
        if let Some(y) = &self.syscall {
            s.push_str(&format!(
                "| syscall: `getppid` loop (median of {}) | {} per call | native {} (CPU time); QEMU TCG {} ({:.0}× native) | {:.0}× native | none set (reported) |\n",
                y.rxen_us.runs.len(),
                micros(y.rxen_us.median),
                micros(y.native_us.median),
                micros(y.tcg_us.median),
                y.tcg_vs_native,
                y.rxen_vs_native,
            ));
        }
        s
    }

    /// The summary printed at the end of a run.
    pub fn text(&self) -> String {
        let mut s = format!(
            "host: {} CPUs, {} GiB, Linux {}, load average at start {}\n\
             guest: Debian {}, {} MiB, 1 vCPU\n",
            self.host.cpus,
            self.host.memory_gib,
            self.host.kernel,
            self.host.load_average,
            self.guest_kernel,
            self.guest_memory_mib
        );
        if let Some(b) = &self.boot {
            s.push_str(&format!(
                "\nboot (spawn to the /init marker, median of {}):\n  rxen      {}   runs {}\n  QEMU TCG  {}   runs {}\n  ratio     rxen is {:.2}× as fast as TCG (TCG time ÷ rxen time)\n",
                b.rxen_s.runs.len(),
                secs(b.rxen_s.median),
                list(&b.rxen_s.runs, secs),
                secs(b.tcg_s.median),
                list(&b.tcg_s.runs, secs),
                b.speedup_vs_tcg,
            ));
            for t in &b.targets {
                s.push_str(&format!("  target    {}: {}\n", t.what, t.verdict()));
            }
            if let Some(st) = &b.rxen_stats {
                s.push_str(&format!(
                    "  rxen (median run, to poweroff): {}\n",
                    st.summary()
                ));
            }
            if let Some(o) = b.rxen_outside_domain_s {
                s.push_str(&format!(
                    "  rxen process outside the domain's run (config, kernel load, build, teardown): {}\n",
                    secs(o)
                ));
            }
        }
        if let Some(c) = &self.cpu {
            s.push_str(&format!(
                "\nCPU ({} M xorshift rounds timed by the program: guests' wall time vs the native process's CPU time; median of {}):\n  rxen      {}   runs {}\n  native    {}   runs {} (CPU time; wall time {})\n  QEMU TCG  {}   runs {}\n  ratio     rxen guest runs at {:.1} % of native speed; TCG at {:.1} % (best runs: rxen {:.1} %)\n",
                c.rounds / 1_000_000,
                c.rxen_s.runs.len(),
                secs(c.rxen_s.median),
                list(&c.rxen_s.runs, secs),
                secs(c.native_s.median),
                list(&c.native_s.runs, secs),
                secs(c.native_wall_s.median),
                secs(c.tcg_s.median),
                list(&c.tcg_s.runs, secs),
                c.rxen_pct_of_native,
                c.tcg_pct_of_native,
                c.rxen_pct_of_native_best,
            ));
            for t in &c.targets {
                s.push_str(&format!("  target    {}: {}\n", t.what, t.verdict()));
            }
        }
        if let Some(y) = &self.syscall {
            s.push_str(&format!(
                "\nsyscall (getppid loop, µs per call: guests' wall time vs the native process's CPU time; median of {}):\n  rxen      {}   runs {}\n  native    {}   runs {} (CPU time; wall time {})\n  QEMU TCG  {}   runs {}\n  ratio     rxen {:.0}× native; TCG {:.0}× native\n  target    none set: keep the shim path as short as measurement allows\n",
                y.rxen_us.runs.len(),
                micros(y.rxen_us.median),
                list(&y.rxen_us.runs, micros),
                micros(y.native_us.median),
                list(&y.native_us.runs, micros),
                micros(y.native_wall_us.median),
                micros(y.tcg_us.median),
                list(&y.tcg_us.runs, micros),
                y.rxen_vs_native,
                y.tcg_vs_native,
            ));
        }
        if let Some(st) = &self.workload_rxen_stats {
            s.push_str(&format!(
                "  rxen (CPU/syscall guest, whole run): {}\n",
                st.summary()
            ));
        }
        s
    }
}

fn list(values: &[f64], f: fn(f64) -> String) -> String {
    values.iter().map(|v| f(*v)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn the_table_has_a_row_per_benchmark_and_says_met_or_not() {
        let series = |v: &[f64]| Series::new(v.to_vec()).unwrap();
        let r = Report {
            boot: Some(Boot {
                rxen_s: series(&[9.8, 9.9, 10.1]),
                tcg_s: series(&[4.6, 4.7, 4.8]),
                speedup_vs_tcg: 4.7 / 9.9,
                rxen_stats: None,
                rxen_outside_domain_s: Some(0.4),
                targets: vec![
                    Target::new("≥ 3× TCG", false),
                    Target::new("< 1.5 s", false),
                ],
            }),
            cpu: Some(Cpu {
                rounds: 300_000_000,
                rxen_s: series(&[0.71]),
                native_s: series(&[0.70]),
                native_wall_s: series(&[0.75]),
                tcg_s: series(&[3.5]),
                rxen_pct_of_native: 98.6,
                tcg_pct_of_native: 20.0,
                rxen_pct_of_native_best: 99.0,
                targets: vec![Target::new("≥ 97 % of native", true)],
            }),
            ..Report::default()
        };
        let md = r.markdown();
        assert_eq!(md.lines().count(), 4, "{md}");
        assert!(
            md.contains("| 9.90 s | QEMU TCG 4.70 s | 0.47× TCG's speed |"),
            "{md}"
        );
        assert!(md.contains("≥ 3× TCG: NOT met; < 1.5 s: NOT met"), "{md}");
        assert!(
            md.contains("98.6 % of native | ≥ 97 % of native: met |"),
            "{md}"
        );
        let text = r.text();
        assert!(text.contains("runs 9.80 s, 9.90 s, 10.1 s"), "{text}");
        assert!(text.contains("teardown): 0.40 s"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["boot"]["rxen_s"]["median"], 9.9);
        assert_eq!(json["boot"]["rxen_s"]["best"], 9.8);
        assert_eq!(json["cpu"]["targets"][0]["met"], true);
        assert!(json["syscall"].is_null());
    }
}
