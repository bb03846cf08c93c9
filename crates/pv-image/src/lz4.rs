//! LZ4 "legacy" frames, the format of Linux's `CONFIG_KERNEL_LZ4` payloads
//! (`lz4 -l`, as Debian's cloud kernel uses): the magic 0x184c2102
//! (little-endian), then blocks, each a little-endian u32 compressed length
//! followed by one LZ4 block that decompresses to at most 8 MiB. The magic may
//! repeat between blocks (concatenated archives). The kernel build appends the
//! uncompressed size as a u32 after the last block. The format has no end
//! marker and no checksum, so that size is required here and checked against
//! what was decoded: it is the only way to tell a payload cut at a block
//! boundary from a whole one. The blocks are decoded by `lz4_flex`.

use crate::ImageError;

/// The legacy frame magic, as it appears in the file.
pub(crate) const MAGIC: [u8; 4] = 0x184c_2102u32.to_le_bytes();
/// Each block decompresses to at most this many bytes (`lz4 -l`'s block size).
const BLOCK_MAX: usize = 8 << 20;
/// LZ4_compressBound(BLOCK_MAX): the largest a compressed block can be.
const COMPRESSED_MAX: usize = BLOCK_MAX + BLOCK_MAX / 255 + 16;

fn corrupt(detail: String) -> ImageError {
    ImageError::Decompress {
        method: "lz4",
        detail,
    }
}

/// Decodes a legacy-framed LZ4 stream (starting with [`MAGIC`]) into at most
/// `limit` bytes. Never panics on malformed input.
pub(crate) fn decompress_legacy(data: &[u8], limit: u64) -> Result<Vec<u8>, ImageError> {
    if !data.starts_with(&MAGIC) {
        return Err(corrupt(
            "the stream does not start with the legacy LZ4 magic".into(),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // The trailing size, if any, sizes the first allocation (capped: it is
    // only a hint until checked at the end).
    let hint = match data.len() {
        n if n >= 8 => u32::from_le_bytes(data[n - 4..].try_into().unwrap_or_default()) as usize,
        _ => 0,
    };
    let mut out = Vec::with_capacity(hint.min(limit).min(data.len().saturating_mul(32)));
    let mut pos = MAGIC.len();
    let mut blocks = 0usize;
    while pos < data.len() {
        let rest = data.len() - pos;
        if rest < 4 {
            return Err(corrupt(format!(
                "the stream ends with {rest} stray bytes after block {blocks} (truncated?)"
            )));
        }
        let word = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        if rest == 4 {
            // The size the kernel build appends: it must match, or the stream
            // lost blocks (or the tail is garbage).
            if word as usize != out.len() % (1 << 32) {
                return Err(corrupt(format!(
                    "the stream ends with a size of {word} bytes but {} were decoded \
                     (truncated or corrupt)",
                    out.len()
                )));
            }
            break;
        }
        pos += 4;
        if word.to_le_bytes() == MAGIC {
            continue; // another archive concatenated to this one
        }
        let len = word as usize;
        if len == 0 || len > COMPRESSED_MAX {
            return Err(corrupt(format!(
                "block {blocks} at offset {:#x} claims {len} compressed bytes (a legacy LZ4 \
                 block holds 1 to {COMPRESSED_MAX})",
                pos - 4
            )));
        }
        let Some(block) = data.get(pos..pos + len) else {
            return Err(corrupt(format!(
                "block {blocks} at offset {:#x} needs {len} bytes but only {} remain \
                 (truncated)",
                pos - 4,
                data.len() - pos
            )));
        };
        pos += len;
        let start = out.len();
        // Decode into a zeroed window no larger than the block can expand to
        // (LZ4 expands at most ~255×), so small or corrupt blocks stay cheap.
        let room = BLOCK_MAX.min(len.saturating_mul(256).saturating_add(64));
        out.resize(start + room, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..]).map_err(|e| {
            corrupt(format!(
                "block {blocks} at offset {:#x}: {e}",
                pos - len - 4
            ))
        })?;
        out.truncate(start + n);
        if out.len() > limit {
            return Err(ImageError::TooLarge {
                what: "the decompressed bzImage payload (decompression stopped there)",
                size: out.len() as u64,
                limit: limit as u64,
            });
        }
        blocks += 1;
    }
    if pos >= data.len() {
        return Err(corrupt(format!(
            "the stream ends after block {blocks} without the uncompressed size the kernel \
             build appends (truncated)"
        )));
    }
    if blocks == 0 {
        return Err(corrupt("the stream holds no blocks (truncated)".into()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What `lz4 -l` and the kernel build make: magic, blocks of at most
    /// `block` input bytes, and the appended size.
    pub(crate) fn legacy(data: &[u8], block: usize, trailer: bool) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for chunk in data.chunks(block) {
            let c = lz4_flex::block::compress(chunk);
            out.extend((c.len() as u32).to_le_bytes());
            out.extend(c);
        }
        if trailer {
            out.extend((data.len() as u32).to_le_bytes());
        }
        out
    }

    /// Compressible but not trivial test data.
    fn sample(n: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 7 == 0 {
                    x as u8
                } else {
                    (i / 64) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_one_and_many_blocks() {
        for (n, block) in [
            (1, 8 << 20),
            (100_000, 8 << 20),
            (300_000, 65_536),
            (20 << 20, 8 << 20),
        ] {
            let data = sample(n);
            let got = decompress_legacy(&legacy(&data, block, true), u64::MAX).unwrap();
            assert!(got == data, "n {n} block {block}");
        }
    }

    #[test]
    fn concatenated_archives() {
        let (a, b) = (sample(5000), sample(7000));
        let mut s = legacy(&a, 4096, false);
        s.extend(legacy(&b, 4096, false));
        s.extend(((a.len() + b.len()) as u32).to_le_bytes());
        assert_eq!(decompress_legacy(&s, u64::MAX).unwrap(), [a, b].concat());
    }

    fn lz4_err(data: &[u8]) -> String {
        match decompress_legacy(data, u64::MAX) {
            Err(ImageError::Decompress {
                method: "lz4",
                detail,
            }) => detail,
            other => panic!("expected an lz4 error, got {other:?}"),
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let s = legacy(&sample(200_000), 65_536, true);
        // Cut points at the start, the end and spread between (each decode
        // zeroes its output window, so not every byte): an error, never a
        // panic nor a short decode.
        let n = s.len();
        let cuts = (0..64).chain((64..n).step_by(n / 500 + 1)).chain(n - 64..n);
        for cut in cuts {
            match decompress_legacy(&s[..cut], u64::MAX) {
                Err(ImageError::Decompress { .. }) => {}
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert!(lz4_err(&s[..s.len() / 2]).contains("truncated"));
        assert!(lz4_err(&MAGIC).contains("without the uncompressed size"));
        // Cut exactly after a block: caught only by the missing size.
        let whole = legacy(&sample(200_000), 65_536, false);
        assert!(lz4_err(&whole).contains("without the uncompressed size"));
    }

    #[test]
    fn wrong_trailer_is_an_error() {
        let data = sample(10_000);
        let mut s = legacy(&data, 4096, false);
        s.extend(12345u32.to_le_bytes());
        assert!(lz4_err(&s).contains("size of 12345"), "{}", lz4_err(&s));
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let s = legacy(&sample(100_000), 16_384, true);
        let mut x = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let mut c = s.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = 4 + x as usize % (c.len() - 4);
                c[i] ^= (x >> 24) as u8 | 1;
            }
            // Corruption may go unnoticed by LZ4 (it has no checksum), but it
            // must never panic.
            let _ = decompress_legacy(&c, 1 << 20);
        }
        // A huge block length is refused before any allocation.
        let mut c = MAGIC.to_vec();
        c.extend(u32::MAX.to_le_bytes());
        c.extend([0u8; 16]);
        assert!(lz4_err(&c).contains("claims 4294967295 compressed bytes"));
        // A block of garbage.
        let mut c = MAGIC.to_vec();
        c.extend(8u32.to_le_bytes());
        c.extend([0xffu8; 8]);
        assert!(lz4_err(&c).contains("block 0"));
    }

    #[test]
    fn output_is_capped() {
        let s = legacy(&vec![0u8; 1 << 20], 65_536, true);
        let e = decompress_legacy(&s, 100_000).unwrap_err();
        assert!(
            matches!(e, ImageError::TooLarge { limit: 100_000, size, .. } if size > 100_000),
            "{e:?}"
        );
    }
}
