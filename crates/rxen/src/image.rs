//! `rxen image`: make disk images for `disk = [...]` without another tool:
//! create an empty one, clone one as a thin copy-on-write qcow2 overlay,
//! show the backing chain of one.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Create an empty image (sparse: takes no space until written).
    #[command(after_help = CREATE_HELP)]
    Create {
        /// Image format.
        #[arg(short = 'f', long, default_value = "qcow2", value_parser = ["raw", "qcow2"])]
        format: String,
        /// The new image (an existing file is never replaced).
        path: PathBuf,
        /// Disk size: bytes, or with a K, M, G or T suffix (powers of 1024).
        size: String,
    },
    /// Make a thin copy-on-write clone: a qcow2 image whose backing file is BASE.
    #[command(after_help = CLONE_HELP)]
    Clone {
        /// The image to clone (raw or qcow2; its format is read from its header).
        base: PathBuf,
        /// The new qcow2 overlay.
        clone: PathBuf,
    },
    /// Show an image's backing chain, top first.
    #[command(after_help = CHAIN_HELP)]
    Chain {
        /// The image.
        path: PathBuf,
    },
}

const CREATE_HELP: &str = "Example:\n  \
    $ rxen image create -f qcow2 /srv/rxen/root.qcow2 10G\n  \
    $ rxen image create -f raw /srv/rxen/data.img 512M";

const CLONE_HELP: &str = "Example:\n  \
    $ rxen image clone /srv/rxen/root.qcow2 /srv/rxen/try-upgrade.qcow2\n  \
    (then disk = ['format=qcow2, vdev=xvda, target=/srv/rxen/try-upgrade.qcow2']);\n  \
    writes go to the clone, the base stays unchanged; delete the clone to\n  \
    throw the changes away. The clone names the base by its absolute path:\n  \
    do not move or change the base while clones of it are in use.";

const CHAIN_HELP: &str = "Example:\n  \
    $ rxen image chain /srv/rxen/try-upgrade.qcow2\n  \
    /srv/rxen/try-upgrade.qcow2  qcow2  10.0 GiB  (file 196.0 KiB)\n  \
    /srv/rxen/root.qcow2         qcow2  10.0 GiB  (file 1.2 GiB)";

pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Create { format, path, size } => {
            let format: disk::Format = format.parse().map_err(anyhow::Error::msg)?;
            let bytes = parse_size(&size)?;
            disk::create(&path, format, bytes)?;
            println!("{}: {format} image of {}", path.display(), human(bytes));
        }
        ImageCommand::Clone { base, clone } => {
            disk::clone(&base, &clone, None)?;
            let chain = disk::chain(&clone)?;
            println!(
                "{}: qcow2 clone of {} ({})",
                clone.display(),
                base.display(),
                human(chain[0].size)
            );
        }
        ImageCommand::Chain { path } => {
            let chain = disk::chain(&path)?;
            let width = chain
                .iter()
                .map(|e| e.path.display().to_string().len())
                .max()
                .unwrap_or(0);
            for e in chain {
                let on_disk = std::fs::metadata(&e.path)
                    .map(|m| human(std::os::unix::fs::MetadataExt::blocks(&m) * 512))
                    .unwrap_or_else(|_| "?".into());
                println!(
                    "{:width$}  {:5}  {:>10}  (file {on_disk})",
                    e.path.display().to_string(),
                    e.format.as_str(),
                    human(e.size),
                );
            }
        }
    }
    Ok(())
}

/// `10G`, `512M`, `4096`: bytes, binary suffixes.
fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => bail!("size {s:?}: unknown suffix {c:?} (use K, M, G or T)"),
            };
            (&s[..i], mul)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("size {s:?} is not a number with an optional K/M/G/T"))?;
    n.checked_mul(mul)
        .with_context(|| format!("size {s:?} is too large"))
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert!(parse_size("10X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(10 << 30), "10.0 GiB");
    }
}
