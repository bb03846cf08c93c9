//! The boot benchmark: from spawning rxen (or QEMU TCG) to the guest's
//! `/init` marker on its console, same kernel and initramfs for both.

use anyhow::{bail, Result};

use crate::guest::{boot_init, INIT_MARKER};
use crate::launch::{self, Guest, Hypervisor, Run};
use crate::report::{median, Boot, Series, Target};
use crate::Bench;

/// rxen must be this many times faster than TCG...
const SPEEDUP_TARGET: f64 = 3.0;
/// ...and boot in under this many seconds.
const SECONDS_TARGET: f64 = 1.5;

pub fn run(b: &Bench, runs: usize) -> Result<Boot> {
    let initramfs = b.prep.initramfs(boot_init())?;
    let guest = Guest {
        kernel: &b.prep.kernel.vmlinuz,
        initramfs: &initramfs,
        memory_mib: b.memory_mib,
    };
    println!(
        "boot: spawn to `{INIT_MARKER}` on the console, {runs} runs each (rxen and TCG alternate)"
    );
    let mut rxen = Vec::new();
    let mut tcg = Vec::new();
    for i in 1..=runs {
        let r = boot_once(b, &b.rxen, &guest)?;
        let t = boot_once(b, &Hypervisor::Tcg, &guest)?;
        println!("  run {i}: rxen {:.2} s, QEMU TCG {:.2} s", r.0, t.0);
        rxen.push(r);
        tcg.push(t.0);
    }
    let times: Vec<f64> = rxen.iter().map(|r| r.0).collect();
    let (Some(rxen_s), Some(tcg_s)) = (Series::new(times.clone()), Series::new(tcg)) else {
        bail!("the boot benchmark needs at least one run");
    };
    // The stats of the run whose time is the median (or nearest it).
    let mid = median(&times).unwrap_or(0.0);
    let median_run = rxen
        .iter()
        .min_by(|a, b| (a.0 - mid).abs().total_cmp(&(b.0 - mid).abs()));
    let rxen_stats = median_run.and_then(|r| r.1.stats.clone());
    // The process's life outside the domain's run: config, loading and
    // decompressing the kernel, building the domain, and tearing it down.
    let rxen_outside_domain_s = median_run.and_then(|r| {
        let ran = r.1.stats.as_ref()?.elapsed_s?;
        Some(r.1.elapsed.as_secs_f64() - ran)
    });
    let speedup = tcg_s.median / rxen_s.median;
    let targets = vec![
        Target::new(
            format!("≥ {SPEEDUP_TARGET}× faster than TCG"),
            speedup >= SPEEDUP_TARGET,
        ),
        Target::new(
            format!("under {SECONDS_TARGET} s"),
            rxen_s.median < SECONDS_TARGET,
        ),
    ];
    Ok(Boot {
        rxen_s,
        tcg_s,
        speedup_vs_tcg: speedup,
        rxen_stats,
        rxen_outside_domain_s,
        targets,
    })
}

/// One boot; an error unless the marker appeared and the guest powered off.
fn boot_once(b: &Bench, hv: &Hypervisor, guest: &Guest) -> Result<(f64, Run)> {
    let run = launch::boot(hv, guest, INIT_MARKER, b.limit, &b.work, b.show_console)?;
    let Some(at) = run.marker_at else {
        bail!(
            "{} exited ({}) without the guest printing {INIT_MARKER}:\n{}",
            hv.name(),
            run.status,
            run.transcript()
        );
    };
    if !run.status.success() {
        bail!(
            "{} exited with {} after the guest's poweroff:\n{}",
            hv.name(),
            run.status,
            run.transcript()
        );
    }
    Ok((at.as_secs_f64(), run))
}
