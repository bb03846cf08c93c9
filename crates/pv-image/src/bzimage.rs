//! x86 bzImage: locate the compressed payload through the boot-protocol setup
//! header and decompress it to the ELF vmlinux.

use std::io::Read;

use crate::elf::{u16_at, u32_at, ELF_MAGIC};
use crate::error::hex;
use crate::{ImageError, MAX_DECOMPRESSED};

/// Offset of the "HdrS" boot-protocol signature.
pub(crate) const HDRS_OFFSET: usize = 0x202;
const SETUP_SECTS: usize = 0x1f1;
const VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// End of the setup-header fields this module reads.
const HEADER_END: usize = 0x250;

/// liblzma's memory limit for the decoder (the kernel's XZ uses a 32 MiB
/// dictionary; the decoder needs little more than that).
const XZ_MEMLIMIT: u64 = 256 << 20;

/// `true` if `bytes` carries the x86 boot-protocol signature.
pub(crate) fn is_bzimage(bytes: &[u8]) -> bool {
    bytes.get(HDRS_OFFSET..HDRS_OFFSET + 4) == Some(b"HdrS")
}

/// Compression methods a Linux payload may use, by magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Xz,
    Gzip,
    Lz4Legacy,
    Elf,
    Unsupported(&'static str),
}

pub(crate) fn detect(payload: &[u8]) -> Option<Method> {
    const MAGICS: &[(&[u8], Method)] = &[
        (b"\xfd7zXZ\x00", Method::Xz),
        (b"\x1f\x8b", Method::Gzip),
        (ELF_MAGIC, Method::Elf),
        (b"BZh", Method::Unsupported("bzip2")),
        (b"\x5d\x00\x00", Method::Unsupported("lzma")),
        (b"\x89LZO", Method::Unsupported("lzo")),
        (&crate::lz4::MAGIC, Method::Lz4Legacy),
        // The LZ4 frame format; Linux uses the legacy one above.
        (
            b"\x04\x22\x4d\x18",
            Method::Unsupported("lz4 (frame format)"),
        ),
        (b"\x28\xb5\x2f\xfd", Method::Unsupported("zstd")),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| payload.starts_with(m))
        .map(|&(_, method)| method)
}

/// The compressed payload of a bzImage (the bytes the setup header points at).
pub(crate) fn payload(bytes: &[u8]) -> Result<&[u8], ImageError> {
    let version = u16_at(bytes, VERSION);
    if version < 0x0208 {
        return Err(ImageError::OldBootProtocol { version });
    }
    if bytes.len() < HEADER_END {
        return Err(ImageError::Truncated {
            part: "bzImage setup header".into(),
            needed: HEADER_END as u64,
            available: bytes.len() as u64,
        });
    }
    let setup_sects = match bytes[SETUP_SECTS] {
        0 => 4,
        n => n as u64,
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = u32_at(bytes, PAYLOAD_OFFSET) as u64;
    let length = u32_at(bytes, PAYLOAD_LENGTH) as u64;
    if pm_start > bytes.len() as u64 {
        return Err(ImageError::Truncated {
            part: format!("bzImage protected-mode code (setup_sects {setup_sects})"),
            needed: pm_start,
            available: bytes.len() as u64,
        });
    }
    let start = pm_start + offset;
    let end = start + length;
    if end > bytes.len() as u64 {
        return Err(ImageError::Truncated {
            part: format!("bzImage payload ({length} bytes at offset {start:#x})"),
            needed: end,
            available: bytes.len() as u64,
        });
    }
    Ok(&bytes[start as usize..end as usize])
}

/// Decompresses a payload to the ELF vmlinux. Trailing data after the
/// compressed stream (Linux appends the 4-byte uncompressed size) is ignored.
pub(crate) fn decompress(payload: &[u8]) -> Result<Vec<u8>, ImageError> {
    decompress_limited(payload, MAX_DECOMPRESSED)
}

/// [`decompress`] with an output limit (tests use a small one).
pub(crate) fn decompress_limited(payload: &[u8], limit: u64) -> Result<Vec<u8>, ImageError> {
    let method = detect(payload).ok_or_else(|| ImageError::UnknownCompression {
        magic: payload[..payload.len().min(8)].to_vec(),
    })?;
    // Linux appends the uncompressed size as a little-endian u32: a capacity
    // hint, trusted only up to a plausible compression ratio.
    let hint = match payload.len() {
        n if n >= 4 => (u32_at(payload, n - 4) as u64)
            .min(limit)
            .min(n as u64 * 32) as usize,
        _ => 0,
    };
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match method {
        Method::Elf => return Ok(payload.to_vec()),
        Method::Unsupported(name) => {
            return Err(ImageError::UnsupportedCompression { method: name })
        }
        Method::Xz => {
            let stream =
                liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0).map_err(|e| {
                    ImageError::Decompress {
                        method: "xz",
                        detail: e.to_string(),
                    }
                })?;
            (
                "xz",
                Box::new(liblzma::read::XzDecoder::new_stream(payload, stream)),
            )
        }
        Method::Gzip => ("gzip", Box::new(flate2::read::GzDecoder::new(payload))),
        Method::Lz4Legacy => {
            let out = crate::lz4::decompress_legacy(payload, limit)?;
            return check_elf(out, "lz4");
        }
    };
    let mut out = Vec::with_capacity(hint);
    reader
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Decompress {
            method: name,
            detail: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            what: "the decompressed bzImage payload (decompression stopped there)",
            size: out.len() as u64,
            limit,
        });
    }
    check_elf(out, name)
}

/// `out` if it is an ELF vmlinux, else a clear error.
fn check_elf(out: Vec<u8>, name: &str) -> Result<Vec<u8>, ImageError> {
    if !out.starts_with(ELF_MAGIC) {
        return Err(ImageError::NotAKernel {
            found: format!(
                "a bzImage whose {name} payload decompresses to {} instead of an ELF vmlinux",
                hex(&out[..out.len().min(8)])
            ),
        });
    }
    Ok(out)
}
