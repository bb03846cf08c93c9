//! rxen's exit statistics, read from the "domain ended" line of its domain
//! log (`elapsed=9.7s ... stats=Stats { exits: 68000, hypercalls: ..., run_ns:
//! ... }`). The fields are taken by name, whatever they are, so the report
//! follows the monitor as it grows new counters.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// The counters of one domain's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DomainStats {
    /// The monitor's own measure of the run (domain start to end).
    pub elapsed_s: Option<f64>,
    /// Every `name: number` field of the `Stats { ... }` value.
    pub counters: BTreeMap<String, u64>,
}

impl DomainStats {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    /// One line for people: exits, hypercalls, time in KVM_RUN, µs per exit.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = self.elapsed_s {
            parts.push(format!("domain ran {e:.2} s"));
        }
        let exits = self.get("exits");
        if let Some(x) = exits {
            parts.push(format!("{x} exits"));
        }
        if let Some(h) = self.get("hypercalls") {
            parts.push(format!("{h} hypercalls"));
        }
        if let Some(run) = self.get("run_ns") {
            let mut s = format!("{:.2} s in KVM_RUN", run as f64 / 1e9);
            if let Some(e) = self.elapsed_s.filter(|e| *e > 0.0) {
                s.push_str(&format!(" ({:.0} % of it)", run as f64 / 1e9 / e * 100.0));
            }
            parts.push(s);
            if let Some(x) = exits.filter(|x| *x > 0) {
                parts.push(format!("{:.1} µs per exit", run as f64 / x as f64 / 1e3));
            }
        }
        let rest: Vec<String> = self
            .counters
            .iter()
            .filter(|(k, _)| !["exits", "hypercalls", "run_ns"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !rest.is_empty() {
            parts.push(rest.join(", "));
        }
        parts.join("; ")
    }
}

/// The stats in the domain log at `path`, if it has a "domain ended" line.
pub fn read_stats(path: &Path) -> Option<DomainStats> {
    let log = std::fs::read_to_string(path).ok()?;
    log.lines()
        .rev()
        .find(|l| l.contains("domain ended"))
        .and_then(parse_ended_line)
}

/// Parses one "domain ended" line.
pub fn parse_ended_line(line: &str) -> Option<DomainStats> {
    let (_, after) = line.split_once("stats=")?;
    let open = after.find('{')?;
    let close = after[open..].find('}')? + open;
    let mut counters = BTreeMap::new();
    for field in after[open + 1..close].split(',') {
        let Some((k, v)) = field.split_once(':') else {
            continue;
        };
        if let Ok(v) = v.trim().parse::<u64>() {
            counters.insert(k.trim().to_string(), v);
        }
    }
    let elapsed_s = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("elapsed="))
        .and_then(parse_debug_duration)
        .map(|d| d.as_secs_f64());
    Some(DomainStats {
        elapsed_s,
        counters,
    })
}

/// A `Duration` in its `Debug` form: `9.71s`, `975.3ms`, `12µs`, `80ns`.
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let units = [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ];
    for (suffix, scale) in units {
        if let Some(num) = s.strip_suffix(suffix) {
            let v: f64 = num.parse().ok()?;
            return (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v * scale));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2026-11-26T16:01:02.123456Z  INFO domain: domain ended \
        reason=\"poweroff\" detail=Poweroff destroyed=None elapsed=9.712345s \
        stats=Stats { exits: 68000, hypercalls: 60000, syscalls: 12, page_faults: 3, \
        ptw_writes: 0, run_ns: 9500000000, ptw_runs: 0, ptw_run_ns: 0 }";

    #[test]
    fn reads_every_counter_and_the_elapsed_time() {
        let s = parse_ended_line(LINE).unwrap();
        assert_eq!(s.get("exits"), Some(68000));
        assert_eq!(s.get("hypercalls"), Some(60000));
        assert_eq!(s.get("run_ns"), Some(9_500_000_000));
        assert_eq!(s.get("ptw_run_ns"), Some(0));
        assert_eq!(s.counters.len(), 8);
        assert!((s.elapsed_s.unwrap() - 9.712345).abs() < 1e-9);
        let text = s.summary();
        assert!(text.contains("68000 exits"), "{text}");
        assert!(text.contains("139.7 µs per exit"), "{text}");
        assert!(text.contains("98 % of it"), "{text}");
    }

    #[test]
    fn durations_in_debug_form() {
        assert_eq!(
            parse_debug_duration("975ms"),
            Some(Duration::from_millis(975))
        );
        assert_eq!(
            parse_debug_duration("12µs"),
            Some(Duration::from_micros(12))
        );
        assert_eq!(parse_debug_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_debug_duration("fast"), None);
        assert_eq!(parse_debug_duration("-1s"), None);
    }

    #[test]
    fn other_lines_give_nothing() {
        assert_eq!(parse_ended_line("INFO domain: domain starting"), None);
        let dir = std::env::temp_dir().join(format!("rxen-bench-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("domain.log");
        std::fs::write(&log, format!("INFO domain: domain starting\n{LINE}\n")).unwrap();
        assert_eq!(read_stats(&log).unwrap().get("exits"), Some(68000));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_stats(&log), None);
    }
}
