//! Prepares the default guest and prints where it is:
//! `cargo run -p guestprep --example prepare [cloud]`.

use std::time::Instant;

fn main() -> Result<(), guestprep::PrepError> {
    let cloud = std::env::args().nth(1).as_deref() == Some("cloud");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let flavour = if cloud {
        guestprep::Flavour::CloudAmd64
    } else {
        guestprep::Flavour::Amd64
    };
    let kernel = guestprep::debian_kernel(flavour)?;
    println!(
        "kernel     {} ({}, {} bytes) in {:.2?}",
        kernel.vmlinuz.display(),
        kernel.version,
        size(&kernel.vmlinuz),
        t.elapsed()
    );
    let t = Instant::now();
    let (_, initramfs) = guestprep::default_guest()?;
    println!(
        "initramfs  {} ({} bytes) in {:.2?}",
        initramfs.display(),
        size(&initramfs),
        t.elapsed()
    );
    Ok(())
}
