//! The CPU and syscall benchmarks: the guest program's loops, run inside one
//! rxen guest, one QEMU TCG guest and natively, each run timed by the program
//! itself.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::domain_log::DomainStats;
use crate::guest::{workload_init, Reading, INIT_MARKER, RESULT};
use crate::launch::{self, Guest, Hypervisor, Run};
use crate::report::{Cpu, Series, Syscall, Target};
use crate::Bench;

/// xorshift rounds per CPU run: ~0.7 s natively on this project's machines.
pub const CPU_ROUNDS: u64 = 300_000_000;
pub const CPU_RUNS: usize = 5;
/// Each syscall run loops for at least this long.
pub const SYSCALL_MS: u64 = 1000;
pub const SYSCALL_RUNS: usize = 3;
/// The guest must run the loop at this share of native speed or better.
const CPU_TARGET_PCT: f64 = 97.0;

/// Which loops to run.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub cpu: bool,
    pub syscall: bool,
}

/// What the workload benchmarks found.
pub struct Results {
    pub cpu: Option<Cpu>,
    pub syscall: Option<Syscall>,
    pub rxen_stats: Option<DomainStats>,
}

pub fn run(b: &Bench, wanted: Wanted) -> Result<Results> {
    let mut plan: Vec<(&str, u64)> = Vec::new();
    if wanted.cpu {
        plan.extend(std::iter::repeat_n(("cpu", CPU_ROUNDS), CPU_RUNS));
    }
    if wanted.syscall {
        plan.extend(std::iter::repeat_n(("syscall", SYSCALL_MS), SYSCALL_RUNS));
    }
    let initramfs = b.prep.initramfs(workload_init(&plan))?;
    let guest = Guest {
        kernel: &b.prep.kernel.vmlinuz,
        initramfs: &initramfs,
        memory_mib: b.memory_mib,
    };
    let what = match (wanted.cpu, wanted.syscall) {
        (true, true) => "cpu and syscall",
        (true, false) => "cpu",
        _ => "syscall",
    };
    println!("{what}: the loops natively, in an rxen guest and in a QEMU TCG guest");
    // Native runs before and after the guests, so that they sample the same
    // stretch of a busy machine's load as the guests do.
    let mut native = run_native(b, &plan)?;
    println!("  native: {} runs done", native.len());
    let (rxen, rxen_run) = run_guest(b, &b.rxen, &guest, plan.len())?;
    println!(
        "  rxen: {} runs done (guest ran {:.1} s)",
        rxen.len(),
        rxen_run.elapsed.as_secs_f64()
    );
    let (tcg, tcg_run) = run_guest(b, &Hypervisor::Tcg, &guest, plan.len())?;
    println!(
        "  QEMU TCG: {} runs done (guest ran {:.1} s)",
        tcg.len(),
        tcg_run.elapsed.as_secs_f64()
    );
    native.extend(run_native(b, &plan)?);
    println!("  native: {} runs done", native.len());

    let cpu = if wanted.cpu {
        Some(cpu_result(&native, &rxen, &tcg)?)
    } else {
        None
    };
    let syscall = if wanted.syscall {
        Some(syscall_result(&native, &rxen, &tcg)?)
    } else {
        None
    };
    Ok(Results {
        cpu,
        syscall,
        rxen_stats: rxen_run.stats,
    })
}

/// The plan run natively, one process per step.
fn run_native(b: &Bench, plan: &[(&str, u64)]) -> Result<Vec<Reading>> {
    let mut out = Vec::new();
    for (mode, arg) in plan {
        let o = Command::new(&b.prep.program)
            .arg(mode)
            .arg(arg.to_string())
            .output()
            .with_context(|| format!("cannot run {}", b.prep.program.display()))?;
        let text = String::from_utf8_lossy(&o.stdout);
        let Some(r) = text.lines().find_map(Reading::parse) else {
            bail!(
                "the guest program run natively ({mode} {arg}) printed no result ({}):\n{text}{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        };
        out.push(r);
    }
    Ok(out)
}

/// Boots the workload guest; an error unless every step printed its result.
fn run_guest(
    b: &Bench,
    hv: &Hypervisor,
    guest: &Guest,
    steps: usize,
) -> Result<(Vec<Reading>, Run)> {
    let run = launch::boot(hv, guest, INIT_MARKER, b.limit, &b.work, b.show_console)?;
    let readings: Vec<Reading> = run.lines_with(RESULT).filter_map(Reading::parse).collect();
    if readings.len() != steps || !run.status.success() {
        bail!(
            "the {} guest printed {} of {steps} results and exited with {}:\n{}",
            hv.name(),
            readings.len(),
            run.status,
            run.transcript()
        );
    }
    Ok((readings, run))
}

fn of_mode<'a>(readings: &'a [Reading], mode: &'a str) -> impl Iterator<Item = &'a Reading> {
    readings.iter().filter(move |r| r.mode == mode)
}

/// Seconds per CPU run by the `clock` field (`ns`: wall, `cpu_ns`: CPU
/// time); every run's sum must be the native one.
fn cpu_series(readings: &[Reading], clock: &str, expected_sum: &str, who: &str) -> Result<Series> {
    let mut secs = Vec::new();
    for r in of_mode(readings, "cpu") {
        if r.get("sum") != Some(expected_sum) {
            bail!(
                "{who}'s CPU loop computed sum={:?}, natively it is {expected_sum}: the guest miscomputed",
                r.get("sum")
            );
        }
        let ns = r
            .num(clock)
            .with_context(|| format!("a cpu result from {who} without {clock}="))?;
        secs.push(ns as f64 / 1e9);
    }
    Series::new(secs).with_context(|| format!("no CPU results from {who}"))
}

fn cpu_result(native: &[Reading], rxen: &[Reading], tcg: &[Reading]) -> Result<Cpu> {
    let sum = of_mode(native, "cpu")
        .next()
        .and_then(|r| r.get("sum"))
        .context("no native CPU result")?
        .to_string();
    // The baseline is the native process's CPU time: on a busy machine its
    // wall time also counts the time it waited for a CPU. The guests' figures
    // are wall time (the guest cannot see the host's scheduling), so a busy
    // machine makes rxen look worse, never better.
    let native_s = cpu_series(native, "cpu_ns", &sum, "native")?;
    let native_wall_s = cpu_series(native, "ns", &sum, "native")?;
    let rxen_s = cpu_series(rxen, "ns", &sum, "rxen")?;
    let tcg_s = cpu_series(tcg, "ns", &sum, "QEMU TCG")?;
    let rxen_pct = native_s.median / rxen_s.median * 100.0;
    let tcg_pct = native_s.median / tcg_s.median * 100.0;
    let rxen_best_pct = native_s.best / rxen_s.best * 100.0;
    Ok(Cpu {
        rounds: CPU_ROUNDS,
        targets: vec![Target::new(
            format!("≥ {CPU_TARGET_PCT} % of native"),
            rxen_pct >= CPU_TARGET_PCT,
        )],
        rxen_s,
        native_s,
        native_wall_s,
        tcg_s,
        rxen_pct_of_native: rxen_pct,
        rxen_pct_of_native_best: rxen_best_pct,
        tcg_pct_of_native: tcg_pct,
    })
}

/// µs per getppid call by the `clock` field, one figure per run.
fn syscall_series(readings: &[Reading], clock: &str, who: &str) -> Result<Series> {
    let mut us = Vec::new();
    for r in of_mode(readings, "syscall") {
        let (Some(calls), Some(ns)) = (r.num("calls"), r.num(clock)) else {
            bail!("a syscall result from {who} without calls= and {clock}=");
        };
        if calls == 0 {
            bail!("{who}'s syscall loop made no calls");
        }
        us.push(ns as f64 / calls as f64 / 1e3);
    }
    Series::new(us).with_context(|| format!("no syscall results from {who}"))
}

fn syscall_result(native: &[Reading], rxen: &[Reading], tcg: &[Reading]) -> Result<Syscall> {
    // Native CPU time again, as for the CPU loop.
    let native_us = syscall_series(native, "cpu_ns", "native")?;
    let native_wall_us = syscall_series(native, "ns", "native")?;
    let rxen_us = syscall_series(rxen, "ns", "rxen")?;
    let tcg_us = syscall_series(tcg, "ns", "QEMU TCG")?;
    Ok(Syscall {
        rxen_vs_native: rxen_us.median / native_us.median,
        tcg_vs_native: tcg_us.median / native_us.median,
        rxen_us,
        native_us,
        native_wall_us,
        tcg_us,
    })
}
