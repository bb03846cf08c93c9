//! The CPUID a PV guest sees, both through KVM (plain `cpuid`) and through
//! Xen's forced-emulation prefix (handled by the VMM). Features the PV
//! machine cannot honour are hidden, and Xen's leaves announce a Xen host.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

const XEN_BASE: u32 = 0x4000_0000;

/// Bits cleared per (leaf, register index 0=eax..3=edx).
const HIDE: &[(u32, usize, u32)] = &[
    // 1.ECX: DTES64, MONITOR, DS-CPL, VMX, EST, TM2, PDCM, PCID, DCA, x2APIC,
    // TSC-deadline, XSAVE, OSXSAVE, AVX.
    (
        1,
        2,
        (1 << 2)
            | (1 << 3)
            | (1 << 4)
            | (1 << 5)
            | (1 << 7)
            | (1 << 8)
            | (1 << 15)
            | (1 << 17)
            | (1 << 18)
            | (1 << 21)
            | (1 << 24)
            | (1 << 26)
            | (1 << 27)
            | (1 << 28),
    ),
    // 1.EDX: VME, DE, PSE, PGE, MTRR, MCE, MCA, APIC, PSE36, ACPI, DS, TM, PBE.
    // (Xen PV guests have no large pages.)
    (
        1,
        3,
        (1 << 1)
            | (1 << 2)
            | (1 << 3)
            | (1 << 17)
            | (1 << 7)
            | (1 << 9)
            | (1 << 12)
            | (1 << 13)
            | (1 << 14)
            | (1 << 21)
            | (1 << 22)
            | (1 << 29)
            | (1 << 31),
    ),
    // 7.EBX: FSGSBASE, AVX2, SMEP, INVPCID, AVX512*, SMAP, and everything
    // that needs XSAVE state; 7.ECX: UMIP, PKU, OSPKE, AVX512 extensions.
    (
        7,
        1,
        (1 << 0)
            | (1 << 5)
            | (1 << 7)
            | (1 << 10)
            | (1 << 16)
            | (1 << 17)
            | (1 << 20)
            | (1 << 21)
            | (1 << 26)
            | (1 << 27)
            | (1 << 28)
            | (1 << 30)
            | (1 << 31),
    ),
    (
        7,
        2,
        (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14),
    ),
    // 0x80000001.ECX: SVM; .EDX: 1 GiB pages.
    (0x8000_0001, 2, 1 << 2),
    (0x8000_0001, 3, 1 << 26),
];

fn xen_leaf(function: u32) -> Option<[u32; 4]> {
    let sig = |s: &[u8; 4]| u32::from_le_bytes(*s);
    match function {
        XEN_BASE => Some([XEN_BASE + 5, sig(b"XenV"), sig(b"MMXe"), sig(b"nVMM")]),
        // Xen 4.17.
        0x4000_0001 => Some([(4 << 16) | 17, 0, 0, 0]),
        // One hypercall page, MSR base 0x40000000.
        0x4000_0002 => Some([1, 0x4000_0000, 0, 0]),
        0x4000_0003..=0x4000_0005 => Some([0; 4]),
        _ => None,
    }
}

fn apply_masks(e: &mut kvm_cpuid_entry2) {
    for &(leaf, reg, bits) in HIDE {
        if e.function == leaf && (leaf != 7 || e.index == 0) {
            match reg {
                0 => e.eax &= !bits,
                1 => e.ebx &= !bits,
                2 => e.ecx &= !bits,
                _ => e.edx &= !bits,
            }
        }
    }
    // Leaf 0xd describes XSAVE state: hidden unless add_xsave_features.
    if e.function == 0xd {
        e.eax = 0;
        e.ebx = 0;
        e.ecx = 0;
        e.edx = 0;
    }
}

/// Features the host's KVM leaves out because its CPL0 emulator cannot run
/// them, but which a PV guest, running at CPL3 natively, can use when the
/// CPU has them: user-level instructions that need no OS-managed state
/// (nothing that needs XSAVE). They make x86-64-v2 user space (SSE3, SSSE3,
/// SSE4.1/4.2, POPCNT, CMPXCHG16B, LAHF) run, and spare Linux slow paths:
/// without CMPXCHG16B it emulates `this_cpu_cmpxchg_double` with
/// `pushf; cli`, a #GP for every `cli` at CPL3.
/// (leaf, register as in [`HIDE`], bits)
const NATIVE_ONLY: &[(u32, u8, u32)] = &[
    // 1.ECX: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT,
    // AES, RDRAND.
    (
        1,
        2,
        (1 << 0)
            | (1 << 1)
            | (1 << 9)
            | (1 << 13)
            | (1 << 19)
            | (1 << 20)
            | (1 << 22)
            | (1 << 23)
            | (1 << 25)
            | (1 << 30),
    ),
    // 7.EBX: BMI1, BMI2, ADX, SHA.
    (7, 1, (1 << 3) | (1 << 8) | (1 << 19) | (1 << 29)),
    // 0x80000001.ECX: LAHF/SAHF, LZCNT, PREFETCHW.
    (0x8000_0001, 2, (1 << 0) | (1 << 5) | (1 << 8)),
];

/// XSAVE with the AVX and AVX-512 states when the CPU has them. The guest
/// kernel runs `xsave`/`xrstor` natively at CPL3 (CR4.OSXSAVE is set, see
/// `Machine::create_vcpu`); its `xsetbv` is emulated by the VMM
/// (`emulate.rs`). Why AVX-512 too: on this host the hardware XCR0 while the
/// guest runs is the host's, and guest user space sees AVX-512 through plain
/// `cpuid` and `xgetbv` whatever rxen's table says, so glibc uses it; the
/// guest kernel must then save and restore that state on its context
/// switches, or processes corrupt each other's ZMM and mask registers.
/// AMX and XSAVES-only components stay out; so do XSAVEOPT/XSAVEC/XSAVES.
/// (leaf, register, bits) shown when [`xsave_available`].
const XSAVE_FEATURES: &[(u32, u8, u32)] = &[
    // 1.ECX: FMA, XSAVE, AVX, F16C (OSXSAVE is added with them).
    (1, 2, (1 << 12) | (1 << 26) | (1 << 28) | (1 << 29)),
    // 7.EBX: AVX2, AVX512F, AVX512DQ, AVX512IFMA, AVX512CD, AVX512BW,
    // AVX512VL.
    (
        7,
        1,
        (1 << 5) | (1 << 16) | (1 << 17) | (1 << 21) | (1 << 28) | (1 << 30) | (1 << 31),
    ),
    // 7.ECX: AVX512_VBMI, AVX512_VBMI2, GFNI, VAES, VPCLMULQDQ, AVX512_VNNI,
    // AVX512_BITALG, AVX512_VPOPCNTDQ.
    (
        7,
        2,
        (1 << 1) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14),
    ),
];
/// XCR0 components rxen lets the guest enable: x87, SSE, AVX, and AVX-512's
/// opmask, ZMM_Hi256 and Hi16_ZMM, as far as the CPU has them.
const XCR0_USER: u64 = 0b1110_0111;
/// XSAVE area size for x87 + SSE (legacy area and header).
const XSAVE_SIZE_SSE: u32 = 0x240;

/// Does this CPU have XSAVE and AVX?
pub fn xsave_available() -> bool {
    let ecx = std::arch::x86_64::__cpuid(1).ecx;
    ecx & (1 << 26) != 0 && ecx & (1 << 28) != 0
}

/// XCR0 values the guest may set: [`XCR0_USER`] within what the CPU has.
pub fn xcr0_supported() -> u64 {
    if !xsave_available() {
        return 0;
    }
    std::arch::x86_64::__cpuid_count(0xd, 0).eax as u64 & XCR0_USER
}

/// Size of the XSAVE area for the components enabled in `xcr0` (CPUID
/// 0xd.0 EBX, which depends on XCR0), from the CPU's own layout.
pub fn xsave_size(xcr0: u64) -> u32 {
    (2..8)
        .filter(|i| xcr0 & (1 << i) != 0)
        .map(|i| {
            let c = std::arch::x86_64::__cpuid_count(0xd, i);
            c.eax + c.ebx
        })
        .fold(XSAVE_SIZE_SSE, u32::max)
}

fn add_xsave_features(e: &mut kvm_cpuid_entry2) {
    let supported = xcr0_supported();
    add_native_bits(e, XSAVE_FEATURES, |leaf, bits| {
        // AVX-512 bits only with all three AVX-512 state components.
        if leaf == 7 && supported & 0xe0 != 0xe0 {
            bits & (1 << 5)
        } else {
            bits
        }
    });
    if e.function == 1 {
        e.ecx |= 1 << 27; // OSXSAVE: CR4.OSXSAVE is always set.
    }
    // Leaf 0xd (zeroed by apply_masks): the components rxen allows, laid
    // out as the CPU lays them out.
    if e.function == 0xd {
        match e.index {
            0 => {
                e.eax = supported as u32;
                e.ebx = XSAVE_SIZE_SSE;
                e.ecx = xsave_size(supported);
            }
            i @ 2..=7 if supported & (1 << i) != 0 => {
                let n = std::arch::x86_64::__cpuid_count(0xd, i);
                e.eax = n.eax;
                e.ebx = n.ebx;
            }
            _ => {}
        }
    }
}

fn add_native_features(e: &mut kvm_cpuid_entry2) {
    add_native_bits(e, NATIVE_ONLY, |_, bits| bits);
}

/// ORs into `e` the bits of `table` (leaf, register as in [`HIDE`], bits)
/// that the CPU itself reports, after `keep` narrows them per leaf.
fn add_native_bits(
    e: &mut kvm_cpuid_entry2,
    table: &[(u32, u8, u32)],
    keep: impl Fn(u32, u32) -> u32,
) {
    for &(leaf, reg, bits) in table {
        if e.function != leaf || (leaf == 7 && e.index != 0) {
            continue;
        }
        let bits = keep(leaf, bits);
        let n = std::arch::x86_64::__cpuid_count(leaf, 0);
        match reg {
            1 => e.ebx |= n.ebx & bits,
            2 => e.ecx |= n.ecx & bits,
            _ => e.edx |= n.edx & bits,
        }
    }
}

/// The CPUID table installed in every vCPU (KVM answers plain `cpuid`).
pub fn guest_cpuid(kvm: &Kvm) -> Result<CpuId, kvm_ioctls::Error> {
    let host = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?;
    let xsave = xsave_available();
    let mut out: Vec<kvm_cpuid_entry2> = host
        .as_slice()
        .iter()
        .filter(|e| !(XEN_BASE..XEN_BASE + 0x100).contains(&e.function))
        .copied()
        .map(|mut e| {
            apply_masks(&mut e);
            add_native_features(&mut e);
            if xsave {
                add_xsave_features(&mut e);
            }
            e
        })
        .collect();
    for f in XEN_BASE..=XEN_BASE + 5 {
        let [eax, ebx, ecx, edx] = xen_leaf(f).expect("defined above");
        out.push(kvm_cpuid_entry2 {
            function: f,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        });
    }
    Ok(CpuId::from_entries(&out).expect("fewer entries than KVM's maximum"))
}

/// Answer a CPUID the guest asked for through the forced-emulation prefix,
/// from the same table KVM uses.
pub fn lookup(table: &CpuId, function: u32, index: u32) -> [u32; 4] {
    let entries = table.as_slice();
    let find = |f: u32, i: u32| {
        entries
            .iter()
            .find(|e| e.function == f && (e.flags & 1 == 0 || e.index == i))
    };
    let hit = find(function, index).or_else(|| {
        // Out-of-range basic leaves return the highest basic leaf (Intel rule).
        let max_basic = find(0, 0).map(|e| e.eax).unwrap_or(0);
        if function < 0x4000_0000 && function > max_basic {
            find(max_basic, index)
        } else {
            None
        }
    });
    match hit {
        Some(e) => {
            let mut r = [e.eax, e.ebx, e.ecx, e.edx];
            if function == 1 {
                // Initial APIC id of this vCPU is 0 (one vCPU for now).
                r[1] &= 0x00ff_ffff;
            }
            r
        }
        None => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_xen_leaves() {
        let mut e = kvm_cpuid_entry2 {
            function: 1,
            ecx: u32::MAX,
            edx: u32::MAX,
            ..Default::default()
        };
        apply_masks(&mut e);
        assert_eq!(e.ecx & (1 << 21), 0, "x2APIC hidden");
        assert_eq!(e.edx & (1 << 13), 0, "PGE hidden");
        assert_ne!(e.edx & 1, 0, "FPU kept");
        let x = xen_leaf(XEN_BASE).unwrap();
        let mut sig = Vec::new();
        for r in &x[1..] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"XenVMMXenVMM");
    }

    #[test]
    fn native_user_features_are_shown_when_the_cpu_has_them() {
        let native = std::arch::x86_64::__cpuid(1).ecx;
        let mut e = kvm_cpuid_entry2 {
            function: 1,
            ..Default::default()
        };
        add_native_features(&mut e);
        for bit in [0, 9, 13, 19, 20, 23] {
            assert_eq!(e.ecx & (1 << bit), native & (1 << bit), "1.ECX bit {bit}");
        }
        // Nothing that needs XSAVE state.
        assert_eq!(e.ecx & ((1 << 26) | (1 << 27) | (1 << 28)), 0);
        // The XSAVE size follows XCR0 and the CPU's layout.
        assert_eq!(xsave_size(0b11), 0x240);
        assert!(xsave_size(0b111) >= 0x340 || !xsave_available());
    }
}
