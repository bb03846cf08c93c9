//! Builds the hostile PV kernel and prints its path:
//! `cargo run -p guestprep --example hostile`.

fn main() -> Result<(), guestprep::PrepError> {
    println!("{}", guestprep::hostile_kernel()?.display());
    Ok(())
}
