//! Static test programs compiled with the host's gcc.

use crate::cache::{hash_hex, io_err, write_atomic, ScratchDir};
use crate::PrepError;
use std::fs;
use std::path::Path;
use std::process::Command;

const CFLAGS: &[&str] = &["-static", "-O2"];

pub(crate) fn static_binary_in(
    cache: &Path,
    name: &str,
    c_source: &str,
) -> Result<Vec<u8>, PrepError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(PrepError::InvalidSpec(format!(
            "program name {name:?}: use letters, digits, `-`, `_` and `.`"
        )));
    }
    let key = hash_hex(&[
        CFLAGS.join(" ").as_bytes(),
        name.as_bytes(),
        c_source.as_bytes(),
    ]);
    let path = cache.join("bin").join(format!("{name}-{}", &key[..32]));
    if let Ok(bytes) = fs::read(&path) {
        return Ok(bytes);
    }
    let scratch = ScratchDir::new(cache)?;
    let src = scratch.0.join(format!("{name}.c"));
    let out = scratch.0.join(name);
    fs::write(&src, c_source).map_err(io_err("cannot write", &src))?;
    let result = Command::new("gcc")
        .args(CFLAGS)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| PrepError::MissingTool {
            program: "gcc".into(),
            package: "gcc libc6-dev".into(),
            source,
        })?;
    if !result.status.success() {
        return Err(PrepError::Compile {
            name: name.to_string(),
            stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        });
    }
    let bytes = fs::read(&out).map_err(io_err("cannot read", &out))?;
    write_atomic(&path, &bytes, 0o755)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str =
        "#include <stdio.h>\nint main(void) { puts(\"hi from static\"); return 0; }\n";

    #[test]
    fn compiles_runs_and_caches() {
        let cache =
            std::env::temp_dir().join(format!("guestprep-cc-{}", crate::cache::unique_suffix()));
        let a = static_binary_in(&cache, "hello", HELLO).unwrap();
        assert_eq!(&a[..4], b"\x7fELF");
        let bin_dir = cache.join("bin");
        let file = fs::read_dir(&bin_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let out = Command::new(&file).output().unwrap();
        assert_eq!(out.stdout, b"hi from static\n");
        assert!(!has_interp(&a), "statically linked: no PT_INTERP");
        // Second call is served from the cache (same bytes, no new file).
        let b = static_binary_in(&cache, "hello", HELLO).unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read_dir(&bin_dir).unwrap().count(), 1);
        fs::remove_dir_all(&cache).unwrap();
    }

    /// Whether an ELF64 file has a PT_INTERP program header (is dynamically linked).
    fn has_interp(elf: &[u8]) -> bool {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        (0..phnum).any(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
        })
    }

    #[test]
    fn dynamic_binaries_have_interp() {
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interp(&exe));
    }

    #[test]
    fn compile_errors_are_reported() {
        let cache =
            std::env::temp_dir().join(format!("guestprep-cc-{}", crate::cache::unique_suffix()));
        let err = static_binary_in(&cache, "broken", "int main( {").unwrap_err();
        assert!(matches!(err, PrepError::Compile { .. }), "{err:?}");
        assert!(err.to_string().contains("broken"));
        assert!(static_binary_in(&cache, "../x", HELLO).is_err());
        let _ = fs::remove_dir_all(&cache);
    }
}
