//! Kernel parameters rxen adds to a PV guest's command line.
//!
//! On our hosts every hypercall costs a CPL3 trap, a CPL0 trap and an exit
//! to the VMM (~100 µs, see docs/trap-paths.md), so two boot-time loops of a
//! Linux PV kernel that cost Xen a few milliseconds cost seconds here. Two
//! standard kernel parameters avoid them without changing what the guest
//! ends up with:
//!
//! - `nr_cpus=N`: the PV SMP setup asks `VCPUOP_is_up` for every possible
//!   CPU (`nr_cpu_ids`, 8192 on Debian's kernels) and then caps `nr_cpu_ids`
//!   to the vCPUs that answered. With `nr_cpus` set to the domain's vCPU
//!   count the loop asks only those: 8191 fewer hypercalls, same result.
//! - `noreplace-smp`: with one vCPU the kernel rewrites every `lock` prefix
//!   in its text to a no-op prefix, one `text_poke` each (~8 500 sites, each
//!   a page-table switch there and back plus PTE updates: ~45 000
//!   hypercalls). Keeping the `lock` prefixes costs a uniprocessor guest a
//!   few cycles per atomic operation.
//!
//! And one for throughput:
//!
//! - `xen_blkfront.max_indirect_segments=256`: Linux's blkfront sends at
//!   most 32 segments (128 KiB) per request unless told otherwise; rxen's
//!   blkback takes 256 (1 MiB). Every request costs the guest ~10 trapped
//!   hypercalls here, so fewer, larger requests move 1 MiB sequential I/O
//!   ~2.4x faster (rxen-bench-disk). blkfront is a module in Debian's
//!   kernels; modprobe passes it the parameter from the command line (a
//!   bare `insmod` does not: give it `max_indirect_segments=256` itself).
//!
//! Each is left alone when the user's command line already sets it.

/// blkfront's parameter for the segments per request it asks the backend for.
const BLKFRONT_SEGMENTS: &str = "xen_blkfront.max_indirect_segments";
/// What rxen's blkback takes (`backends::blkback::MAX_INDIRECT_SEGMENTS`).
const BLKFRONT_MAX_SEGMENTS: u32 = 256;

/// `cmdline` with rxen's parameters appended, and what was added.
pub fn tune_cmdline(cmdline: &str, vcpus: u32) -> (String, Vec<String>) {
    let has = |key: &str| {
        cmdline.split_whitespace().any(|w| {
            let name = w.split('=').next().unwrap_or(w);
            name == key || name.replace('_', "-") == key.replace('_', "-")
        })
    };
    let mut added = Vec::new();
    if !has("nr_cpus") && !has("maxcpus") && !has("possible_cpus") {
        added.push(format!("nr_cpus={}", vcpus.max(1)));
    }
    if !has("noreplace-smp") {
        added.push("noreplace-smp".to_string());
    }
    if !has(BLKFRONT_SEGMENTS) {
        added.push(format!("{BLKFRONT_SEGMENTS}={}", BLKFRONT_MAX_SEGMENTS));
    }
    let mut out = cmdline.trim_end().to_string();
    for a in &added {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(a);
    }
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::tune_cmdline;

    #[test]
    fn appends_both_parameters() {
        const SEG: &str = "xen_blkfront.max_indirect_segments=256";
        let (c, added) = tune_cmdline("console=hvc0 quiet", 1);
        assert_eq!(
            c,
            format!("console=hvc0 quiet nr_cpus=1 noreplace-smp {SEG}")
        );
        assert_eq!(added, ["nr_cpus=1", "noreplace-smp", SEG]);
        assert_eq!(
            tune_cmdline("", 2).0,
            format!("nr_cpus=2 noreplace-smp {SEG}")
        );
    }

    #[test]
    fn keeps_what_the_user_set() {
        const SEG: &str = "xen_blkfront.max_indirect_segments=256";
        let mine = "root=/dev/xvda nr_cpus=4 noreplace-smp xen-blkfront.max-indirect-segments=32";
        let (c, added) = tune_cmdline(mine, 1);
        assert_eq!(c, mine);
        assert!(added.is_empty());
        assert_eq!(
            tune_cmdline("maxcpus=1", 1).0,
            format!("maxcpus=1 noreplace-smp {SEG}")
        );
        assert_eq!(
            tune_cmdline("possible-cpus=2", 1).0,
            format!("possible-cpus=2 noreplace-smp {SEG}")
        );
        // A value that merely contains the name is not the parameter.
        assert_eq!(
            tune_cmdline("init=/bin/nr_cpus", 1).0,
            format!("init=/bin/nr_cpus nr_cpus=1 noreplace-smp {SEG}")
        );
    }
}
