//! The hostile guest: a tiny PV kernel of the project's own
//! (`guestprep::hostile_kernel`) fires garbage hypercalls at rxen through
//! `rxen create -F`. rxen must answer with Xen's error codes or stop the
//! domain as crashed; it must never panic or hang.
//! Needs /dev/kvm and root; without them it fails and says so.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{require_kvm, run_with_deadline, rxen, Run, TempDir};
use xen_abi::{XEN_EFAULT, XEN_EINVAL, XEN_ENOENT, XEN_ENOSYS, XEN_EPERM};

/// Seeds and hypercalls per seed of the fuzzing run (under a second each on
/// a quiet machine).
const SEEDS: u64 = 30;
const CALLS: u64 = 3_000;
/// A hostile domain runs for a second or two; this long means rxen hangs.
const DEADLINE: Duration = Duration::from_secs(30);

/// Boots the hostile kernel with `cmdline` under a deadline.
fn run_hostile(dir: &Path, kernel: &Path, name: &str, cmdline: &str) -> Run {
    let cfg = dir.join(format!("{name}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "name = \"{name}\"\ntype = \"pv\"\nkernel = \"{}\"\nmemory = 32\nextra = \"{cmdline}\"\n",
            kernel.display()
        ),
    )
    .unwrap();
    run_with_deadline(
        Command::new(rxen())
            .env("RXEN_STATE_DIR", dir.join("state"))
            .args(["create", "-F", "-c"])
            .arg(&cfg),
        DEADLINE,
    )
}

/// What went wrong in a hostile run, if anything: it must end within the
/// deadline, without a panic, as crashed (4) or with a poweroff the kernel
/// asked for (`done` or a fuzzer's poweroff ending on its console).
fn verdict(run: &Run, done: &str) -> Option<String> {
    let out = run.stdout();
    if run.timed_out {
        return Some("hung: killed after the deadline".to_string());
    }
    if run.stderr().contains("panicked") {
        return Some("rxen panicked".to_string());
    }
    match run.code() {
        Some(0) if out.contains(done) || out.contains("HOSTILE-ENDING poweroff") => None,
        Some(0) => Some("exit 0 without the kernel asking for a poweroff".to_string()),
        Some(4) => None,
        other => Some(format!(
            "exit status {other:?} (signal: {:?})",
            run.output.status
        )),
    }
}

fn hostile_kernel() -> PathBuf {
    require_kvm();
    guestprep::hostile_kernel().expect("build the hostile kernel (needs gcc and libxen-dev)")
}

/// One bad call per category; the kernel prints what each returned.
#[test]
fn bad_hypercalls_get_xen_error_codes() {
    let kernel = hostile_kernel();
    let dir = TempDir::new("hostile-script");
    let run = run_hostile(dir.path(), &kernel, "hostile-script", "mode=script");
    let t = run.text();
    assert!(!run.timed_out, "rxen hung:\n{t}");
    assert!(!run.stderr().contains("panicked"), "{t}");
    assert!(
        t.contains("HOSTILE-SCRIPT-DONE"),
        "script did not finish:\n{t}"
    );
    assert_eq!(run.code(), Some(0), "{t}");
    let got: HashMap<&str, i64> = t
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("HOSTILE-RET "))
        .filter_map(|l| {
            let (name, v) = l.split_once(' ')?;
            Some((name, v.trim().parse().ok()?))
        })
        .collect();
    let (enosys, einval, efault, eperm, enoent) = (
        -XEN_ENOSYS,
        -XEN_EINVAL,
        -XEN_EFAULT,
        -XEN_EPERM,
        -XEN_ENOENT,
    );
    let expected: &[(&str, i64)] = &[
        ("unknown_hypercall", enosys),
        ("huge_hypercall", enosys),
        ("evtchn_send_huge_port", einval),
        ("evtchn_close_huge_port", einval),
        ("evtchn_unmask_huge_port", einval),
        ("evtchn_status_huge_port", einval),
        ("evtchn_bind_bad_virq", einval),
        ("evtchn_bad_pointer", efault),
        ("console_io_unmapped", efault),
        ("console_io_shim", efault),
        ("console_io_direct_map", efault),
        ("console_io_non_canonical", efault),
        ("console_io_wraps", efault),
        ("xen_version_to_page_table", efault),
        ("xen_version_to_shim", efault),
        ("vm_assist_bad_type", einval),
        ("mmu_update_not_ram", einval),
        ("mmu_update_maps_rxen_frame", eperm),
        ("mmu_update_rxen_l4_slot", einval),
        ("mmu_update_bad_list", efault),
        ("mmu_update_huge_count", einval),
        ("update_va_mapping_shim", einval),
        ("update_va_mapping_non_canonical", einval),
        ("mmuext_unknown_cmd", enosys),
        ("mmuext_pin_not_ram", einval),
        ("update_descriptor_not_ram", einval),
        ("update_descriptor_page_table", einval),
        ("set_gdt_too_many_entries", einval),
        ("vcpu_info_on_page_table", einval),
        ("vcpu_op_bad_vcpu", enoent),
        ("memory_op_unknown", enosys),
        ("memory_op_bad_pointer", efault),
        ("grant_unknown_op", enosys),
        ("grant_setup_two", einval),
        ("sched_op_unknown", enosys),
        ("sched_shutdown_bad_pointer", efault),
        ("multicall_bad_list", efault),
        ("multicall_nested", 0),
        ("multicall_nested_result", einval),
        ("multicall_unknown_result", enosys),
        ("physdev_unknown", enosys),
        ("set_segment_base_bad_which", einval),
        ("set_segment_base_non_canonical", einval),
    ];
    let mut wrong = Vec::new();
    for &(name, want) in expected {
        match got.get(name) {
            Some(&v) if v == want => {}
            other => wrong.push(format!("{name}: want {want}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{t}", wrong.join("\n"));
}

/// Randomised garbage from many seeds: every run ends with poweroff (0) or
/// crash (4) within the deadline, never with a panic (101) or a signal.
#[test]
fn randomised_hypercalls_never_panic_or_hang_rxen() {
    let kernel = hostile_kernel();
    let dir = TempDir::new("hostile-fuzz");
    let next = AtomicU64::new(1);
    let results = Mutex::new(Vec::new());
    let t0 = Instant::now();
    // Two at a time: the machine has two cores.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed > SEEDS {
                    break;
                }
                let run = run_hostile(
                    dir.path(),
                    &kernel,
                    &format!("hostile-{seed}"),
                    &format!("seed={seed} count={CALLS}"),
                );
                results.lock().unwrap().push((seed, run));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(seed, _)| *seed);
    let mut bad = Vec::new();
    let mut completed = 0;
    for (seed, run) in &results {
        let out = run.stdout();
        let err = run.stderr();
        let how = verdict(run, "HOSTILE-DONE");
        if out.contains("HOSTILE-DONE") {
            completed += 1;
        }
        if let Some(how) = how {
            let tail: String = err.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            bad.push(format!("seed {seed}: {how}\n{tail}"));
        }
    }
    eprintln!(
        "{SEEDS} seeds x {CALLS} hypercalls: {completed} ran to the end, in {:?}",
        t0.elapsed()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    // The rest ended early (a rare poweroff, a bad iret or the kernel
    // breaking itself); most must really run their hypercalls.
    assert!(
        completed * 3 >= SEEDS * 2,
        "only {completed} of {SEEDS} seeds ran all {CALLS} hypercalls"
    );
}

/// The guest kernel rewrites its own page tables through the kernel stub's
/// alias of its RAM (which it can: `docs/trap-paths.md`): rxen's L4 slots in
/// its top-level table, rxen's own frames (shim, IDT, GDT, stacks) mapped
/// writable and scribbled on, random words of its RAM, with hypercalls in
/// between. Its domain may crash; rxen must not panic or hang.
#[test]
fn a_kernel_writing_its_page_tables_through_the_alias_cannot_hurt_rxen() {
    let kernel = hostile_kernel();
    let dir = TempDir::new("hostile-alias");
    let mut bad = Vec::new();
    let mut crashed = 0;
    for seed in 1..=8u64 {
        let run = run_hostile(
            dir.path(),
            &kernel,
            &format!("hostile-alias-{seed}"),
            &format!("mode=alias seed={seed}"),
        );
        if run.code() == Some(4) {
            crashed += 1;
        }
        if let Some(how) = verdict(&run, "HOSTILE-ALIAS-DONE") {
            let err = run.stderr();
            let tail: String = err.lines().rev().take(15).collect::<Vec<_>>().join("\n");
            bad.push(format!("seed {seed}: {how}\n{tail}"));
        }
    }
    eprintln!("8 alias runs: {crashed} ended as crashed");
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// A guest that fills its xenstore ring with requests and never takes a
/// reply: the host's shared xenstored holds its connection back instead of
/// queuing replies without bound (each READ answers 4 000 bytes), other
/// domains still get the store, and the flooder is destroyed promptly.
#[test]
fn a_guest_that_never_takes_its_xenstore_replies_is_held_back() {
    let kernel = hostile_kernel();
    let dir = TempDir::new("hostile-xsflood");
    let state = dir.path().join("state");
    let rxen_cmd = |args: &[&str]| {
        run_with_deadline(
            Command::new(rxen())
                .env("RXEN_STATE_DIR", &state)
                .args(args),
            DEADLINE,
        )
    };
    let write_cfg = |name: &str, extra: &str| {
        let cfg = dir.path().join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 32\nextra = \"{extra}\"\n",
                kernel.display()
            ),
        )
        .unwrap();
        cfg
    };
    let flood = write_cfg("hostile-xsflood", "mode=xsflood");
    let run = rxen_cmd(&["create", flood.to_str().unwrap()]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    // The first domain of its state directory: id 1.
    let log = state.join("1").join("console.log");
    let sent = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("HOSTILE-XSFLOOD "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    let t = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("HOSTILE-XSFLOOD-START")
    {
        assert!(
            t.elapsed() < DEADLINE,
            "the flooder never started: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Held back: the count stops growing, far below what unbounded
    // queuing takes in the same time.
    std::thread::sleep(Duration::from_secs(6));
    let first = sent();
    std::thread::sleep(Duration::from_secs(3));
    let second = sent();
    assert!(
        second == first && second < 50_000,
        "the daemon kept taking requests whose replies nobody took: {first} then {second}"
    );
    // Another domain still gets its store (its tree is written at create).
    let other = write_cfg("hostile-xs-other", "mode=poweroff");
    let run = rxen_cmd(&["create", "-F", other.to_str().unwrap()]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    // The flooder goes on destroy, without the SIGKILL fallback's wait.
    let t = Instant::now();
    let run = rxen_cmd(&["destroy", "hostile-xsflood"]);
    assert_eq!(run.code(), Some(0), "{}", run.text());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "destroy took {:?}",
        t.elapsed()
    );
    let run = rxen_cmd(&["list"]);
    assert!(!run.stdout().contains("hostile-xsflood"), "{}", run.text());
}
