//! `rxen-bench`: rxen's benchmarks (issue 2), each printed beside its
//! baselines measured in the same run: boot time against QEMU TCG, a CPU loop
//! and a getppid loop against the host (and TCG).
//!
//! A target that is not met is reported, not an error: the command fails only
//! if something breaks (a guest that does not reach its marker, a wrong
//! result, a missing tool).

mod boot;
mod domain_log;
mod guest;
mod launch;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use launch::Hypervisor;
use report::{Host, Report};

/// Guest memory for every benchmark guest (rxen and TCG alike).
const MEMORY_MIB: u32 = 256;

#[derive(Parser)]
#[command(
    name = "rxen-bench",
    version,
    about = "Measure rxen against QEMU TCG and the host: boot time, CPU loop, syscalls",
    after_help = HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Which,
    /// The rxen binary (default: `rxen` next to this program, e.g. target/release/rxen).
    #[arg(long, global = true, value_name = "PATH")]
    rxen: Option<PathBuf>,
    /// Where to write the results as JSON (default: target/bench/results.json
    /// next to this program's target directory).
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Boots per hypervisor in the boot benchmark.
    #[arg(long, global = true, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=50))]
    boot_runs: u16,
    /// Kill a guest that has not powered off after this many seconds.
    #[arg(long, global = true, default_value_t = 180, value_name = "SECS")]
    timeout: u64,
    /// Print each guest's console, every line with the time it arrived.
    #[arg(long, global = true)]
    console: bool,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// Spawn to the guest's /init marker: rxen vs QEMU TCG.
    Boot,
    /// A user-space compute loop: rxen guest vs native (and TCG).
    Cpu,
    /// A getppid loop, µs per call: rxen guest vs native (and TCG).
    Syscall,
    /// All three (what ./test runs).
    All,
}

const HELP: &str = "\
Example:
  $ cargo build --release -p rxen -p bench
  $ target/release/rxen-bench all
  (boots Debian's kernel with a busybox initramfs under rxen and under
  qemu-system-x86_64 -accel tcg, runs the loops there and natively, prints
  each figure, its baselines, the ratio and whether the target is met, a
  Markdown table for the README, and writes target/bench/results.json)

  $ target/release/rxen-bench boot --boot-runs 1    one quick boot each

Needs /dev/kvm, Debian's qemu-system-x86, gcc and libc6-dev; the guest
(kernel, busybox) is fetched once and cached in $RXEN_CACHE. Figures are
medians; on a busy machine they are noisy.

Exit status: 0 when every benchmark ran (whether or not its target was met),
1 when something broke (a guest did not reach its marker, a wrong result).";

/// What every benchmark shares.
pub struct Bench {
    pub rxen: Hypervisor,
    pub prep: guest::Prepared,
    /// Scratch space: configs, rxen's state, the native program.
    pub work: PathBuf,
    pub limit: Duration,
    pub memory_mib: u32,
    /// Print each guest's console (`--console`).
    pub show_console: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rxen-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let rxen = match &cli.rxen {
        Some(p) => p.clone(),
        None => exe.with_file_name("rxen"),
    };
    if !rxen.is_file() {
        bail!(
            "no rxen binary at {} (build it with `cargo build --release -p rxen`, or pass --rxen PATH)",
            rxen.display()
        );
    }
    let json = match &cli.json {
        Some(p) => p.clone(),
        None => default_json(&exe),
    };
    let work = scratch_dir()?;
    let result = measure(cli, rxen, &work);
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;

    println!("\n==== results ====\n{}", report.text());
    println!("Markdown (for the README):\n\n{}", report.markdown());
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report).context("cannot encode the results")?;
    std::fs::write(&json, text + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    println!("results written to {}", json.display());
    Ok(())
}

fn measure(cli: &Cli, rxen: PathBuf, work: &Path) -> Result<Report> {
    let host = Host::probe();
    let prep = guest::Prepared::new(work)?;
    let b = Bench {
        rxen: Hypervisor::Rxen(rxen),
        prep,
        work: work.to_path_buf(),
        limit: Duration::from_secs(cli.timeout),
        memory_mib: MEMORY_MIB,
        show_console: cli.console,
    };
    let mut report = Report {
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host,
        guest_kernel: b.prep.kernel.version.clone(),
        guest_memory_mib: b.memory_mib,
        ..Report::default()
    };
    let all = cli.command == Which::All;
    if all || cli.command == Which::Boot {
        report.boot = Some(boot::run(&b, usize::from(cli.boot_runs))?);
    }
    let wanted = workload::Wanted {
        cpu: all || cli.command == Which::Cpu,
        syscall: all || cli.command == Which::Syscall,
    };
    if wanted.cpu || wanted.syscall {
        let w = workload::run(&b, wanted)?;
        report.cpu = w.cpu;
        report.syscall = w.syscall;
        report.workload_rxen_stats = w.rxen_stats;
    }
    Ok(report)
}

/// `target/bench/results.json` for a program in `target/<profile>/`.
fn default_json(exe: &Path) -> PathBuf {
    exe.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("bench")
        .join("results.json")
}

fn scratch_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("rxen-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create scratch directory {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed_and_its_help_shows_an_example() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Example:"), "{help}");
        assert!(help.contains("rxen-bench all"), "{help}");
        let cli = Cli::try_parse_from(["rxen-bench", "boot", "--boot-runs", "1"]).unwrap();
        assert!(cli.command == Which::Boot && cli.boot_runs == 1);
        assert!(Cli::try_parse_from(["rxen-bench", "boot", "--boot-runs", "0"]).is_err());
    }

    #[test]
    fn results_go_to_the_target_directory() {
        assert_eq!(
            default_json(Path::new("/r/target/release/rxen-bench")),
            Path::new("/r/target/bench/results.json")
        );
    }
}
