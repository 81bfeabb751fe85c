//! A structural check of a GGUF file before anything else reads it.
//!
//! The model file is outside input (an administrator points the configuration at it, and it
//! may be truncated by a failed copy or corrupted on disk). A GGUF reader trusts the lengths in
//! the header: a string or array claiming 2^60 bytes makes it try to allocate them, which
//! aborts the process. [`check`] walks the whole header first, with every length checked
//! against the bytes that remain in the file, every type against the known ones, and every
//! tensor's data against the end of the file, so only a consistent file reaches candle.
//!
//! Format (little-endian), versions 2 and 3: magic `GGUF`, version `u32`, tensor count `u64`,
//! metadata count `u64`; metadata entries (key string, value type `u32`, value); tensor
//! descriptions (name, dimension count `u32`, dimensions `u64`, type `u32`, offset `u64`);
//! padding to `general.alignment` (default 32); tensor data.

use std::io::Read;

use crate::error::LlmError;

const MAGIC: [u8; 4] = *b"GGUF";
/// The most dimensions a ggml tensor has.
const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are refused (real files nest at most once).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Keys and tensor names longer than this are refused.
const MAX_NAME: u64 = 64 * 1024;

/// What the check learned about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufSummary {
    /// The format version (2 or 3).
    pub version: u32,
    /// Metadata entries.
    pub metadata_count: u64,
    /// Tensors.
    pub tensor_count: u64,
    /// The data alignment.
    pub alignment: u64,
    /// Where the tensor data starts.
    pub data_offset: u64,
    /// The bytes of tensor data the descriptions cover (up to the end of the last tensor).
    pub data_bytes: u64,
    /// Tensors stored as Q4_1 (re-quantized at load).
    pub q4_1_tensors: u64,
}

fn invalid(what: impl Into<String>) -> LlmError {
    LlmError::InvalidGguf(what.into())
}

/// (elements per block, bytes per block) of a ggml tensor type this build can run.
pub(crate) fn block_layout(kind: u32) -> Option<(u64, u64)> {
    Some(match kind {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

/// A reader that counts what it has consumed and refuses to read past the file's end.
struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Cursor<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LlmError> {
        let mut b = [0u8; N];
        if self.remaining() < N as u64 {
            return Err(invalid(format!("the file ends inside {what}")));
        }
        self.inner
            .read_exact(&mut b)
            .map_err(|_| invalid(format!("the file ends inside {what}")))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, LlmError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, LlmError> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    /// Skips `n` bytes that must lie inside the file.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), LlmError> {
        if n > self.remaining() {
            return Err(invalid(format!(
                "{what} claims {n} bytes but only {} remain",
                self.remaining()
            )));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|_| invalid(format!("the file ends inside {what}")))?;
        if copied != n {
            return Err(invalid(format!("the file ends inside {what}")));
        }
        self.pos += n;
        Ok(())
    }

    /// Reads a string (u64 length, UTF-8 bytes) of at most `max` bytes.
    fn string(&mut self, max: u64, what: &str) -> Result<String, LlmError> {
        let n = self.u64(what)?;
        if n > max || n > self.remaining() {
            return Err(invalid(format!(
                "{what} claims {n} bytes but only {} remain",
                self.remaining().min(max)
            )));
        }
        let mut buf = vec![0u8; usize::try_from(n).map_err(|_| invalid("a length overflows"))?];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| invalid(format!("the file ends inside {what}")))?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }

    /// Skips a string value after checking its length.
    fn skip_string(&mut self, what: &str) -> Result<(), LlmError> {
        let n = self.u64(what)?;
        self.skip(n, what)
    }
}

/// The fixed size of a scalar metadata type.
fn scalar_size(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn skip_value<R: Read>(
    c: &mut Cursor<R>,
    kind: u32,
    depth: u32,
    key: &str,
    alignment: &mut Option<u64>,
) -> Result<(), LlmError> {
    let what = "a metadata value";
    if let Some(size) = scalar_size(kind) {
        if key == "general.alignment" && depth == 0 {
            if kind != 4 {
                return Err(invalid("general.alignment is not a u32"));
            }
            let a = u64::from(c.u32(what)?);
            if a == 0 || !a.is_power_of_two() || a > 1 << 20 {
                return Err(invalid("general.alignment is not a power of two"));
            }
            *alignment = Some(a);
            return Ok(());
        }
        if kind == 7 {
            let [b] = c.bytes::<1>(what)?;
            if b > 1 {
                return Err(invalid("a boolean metadata value is neither 0 nor 1"));
            }
            return Ok(());
        }
        return c.skip(size, what);
    }
    match kind {
        8 => c.skip_string(what),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(invalid("metadata arrays are nested too deeply"));
            }
            let elem = c.u32("an array's element type")?;
            let count = c.u64("an array's length")?;
            match scalar_size(elem) {
                Some(size) => {
                    let total = count
                        .checked_mul(size)
                        .ok_or_else(|| invalid("an array's length overflows"))?;
                    if total > c.remaining() {
                        return Err(invalid(format!(
                            "an array claims {count} elements but only {} bytes remain",
                            c.remaining()
                        )));
                    }
                    if elem == 7 {
                        for _ in 0..count {
                            skip_value(c, 7, depth + 1, "", alignment)?;
                        }
                        Ok(())
                    } else {
                        c.skip(total, "an array")
                    }
                }
                None if elem == 8 || elem == 9 => {
                    // Each element takes at least 8 bytes (a length or a type and a count).
                    if count > c.remaining() / 8 {
                        return Err(invalid(format!(
                            "an array claims {count} elements but only {} bytes remain",
                            c.remaining()
                        )));
                    }
                    for _ in 0..count {
                        skip_value(c, elem, depth + 1, "", alignment)?;
                    }
                    Ok(())
                }
                None => Err(invalid(format!("unknown metadata array type {elem}"))),
            }
        }
        other => Err(invalid(format!("unknown metadata value type {other}"))),
    }
}

/// Checks the structure of a GGUF file of `file_len` bytes read from `reader` (positioned at
/// its start). Reads the header only; tensor data is checked by its extent.
pub fn check(reader: impl Read, file_len: u64) -> Result<GgufSummary, LlmError> {
    let mut c = Cursor {
        inner: reader,
        pos: 0,
        len: file_len,
    };
    if c.bytes::<4>("the magic number")? != MAGIC {
        return Err(invalid(
            "the file does not start with the GGUF magic number",
        ));
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(LlmError::Unsupported(format!(
            "GGUF version {version} (versions 2 and 3 are supported)"
        )));
    }
    let tensor_count = c.u64("the tensor count")?;
    let metadata_count = c.u64("the metadata count")?;
    // Every metadata entry takes at least 12 bytes, every tensor description at least 24.
    if metadata_count > c.remaining() / 12 {
        return Err(invalid(format!(
            "the header claims {metadata_count} metadata entries, more than the file can hold"
        )));
    }
    if tensor_count > c.remaining() / 24 {
        return Err(invalid(format!(
            "the header claims {tensor_count} tensors, more than the file can hold"
        )));
    }
    let mut alignment = None;
    for _ in 0..metadata_count {
        let key = c.string(MAX_NAME, "a metadata key")?;
        let kind = c.u32("a metadata value type")?;
        skip_value(&mut c, kind, 0, &key, &mut alignment)?;
    }
    let alignment = alignment.unwrap_or(32);
    let mut data_end = 0u64;
    let mut q4_1_tensors = 0u64;
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = c.string(MAX_NAME, "a tensor name")?;
        let dims = c.u32("a tensor's dimension count")?;
        if dims == 0 || dims > MAX_DIMS {
            return Err(invalid(format!(
                "tensor {name} has {dims} dimensions (1 to {MAX_DIMS} are allowed)"
            )));
        }
        let mut elements = 1u64;
        let mut first = 0u64;
        for i in 0..dims {
            let d = c.u64("a tensor dimension")?;
            if d == 0 {
                return Err(invalid(format!("tensor {name} has an empty dimension")));
            }
            if i == 0 {
                first = d;
            }
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| invalid(format!("tensor {name}'s size overflows")))?;
        }
        let kind = c.u32("a tensor type")?;
        let Some((block, block_bytes)) = block_layout(kind) else {
            return Err(LlmError::Unsupported(format!(
                "tensor {name} has ggml type {kind}, which this build cannot run"
            )));
        };
        if kind == 3 {
            q4_1_tensors += 1;
        }
        if !first.is_multiple_of(block) {
            return Err(invalid(format!(
                "tensor {name}'s rows are not a whole number of blocks"
            )));
        }
        let offset = c.u64("a tensor offset")?;
        if !offset.is_multiple_of(alignment) {
            return Err(invalid(format!("tensor {name}'s data is not aligned")));
        }
        let size = (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| invalid(format!("tensor {name}'s size overflows")))?;
        let end = offset
            .checked_add(size)
            .ok_or_else(|| invalid(format!("tensor {name}'s extent overflows")))?;
        data_end = data_end.max(end);
        tensors.push((offset, end));
    }
    let data_offset = c.pos.div_ceil(alignment).saturating_mul(alignment);
    let available = file_len.saturating_sub(data_offset);
    if data_end > 0 && (data_offset > file_len || data_end > available) {
        return Err(invalid(format!(
            "the file is truncated: its tensors need {data_end} bytes of data but {available} follow the header"
        )));
    }
    tensors.sort_unstable();
    if tensors.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(invalid("two tensors' data overlap"));
    }
    Ok(GgufSummary {
        version,
        metadata_count,
        tensor_count,
        alignment,
        data_offset,
        data_bytes: data_end,
        q4_1_tensors,
    })
}

/// [`check`] over bytes in memory.
pub fn check_bytes(bytes: &[u8]) -> Result<GgufSummary, LlmError> {
    check(bytes, bytes.len() as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small valid GGUF file: a few metadata entries (a string array among them) and two
    /// tensors (F32 and Q8_0) with their data.
    pub(crate) fn sample() -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        string(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "general.alignment");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        string(&mut b, "tokenizer.ggml.tokens");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&3u64.to_le_bytes());
        for t in ["a", "b", "ab"] {
            string(&mut b, t);
        }
        string(&mut b, "tokenizer.ggml.add_bos_token");
        b.extend_from_slice(&7u32.to_le_bytes());
        b.push(1);
        string(&mut b, "a.weight");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        string(&mut b, "b.weight");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&32u64.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&32u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, 32 + 34));
        b
    }

    #[test]
    fn a_consistent_file_passes() {
        let s = check_bytes(&sample()).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(s.tensor_count, 2);
        assert_eq!(s.metadata_count, 4);
        assert_eq!(s.alignment, 32);
        assert_eq!(s.data_bytes, 32 + 34);
    }

    #[test]
    fn every_truncation_is_refused() {
        let b = sample();
        for n in 0..b.len() {
            let e = check_bytes(&b[..n]).unwrap_err();
            assert!(matches!(e, LlmError::InvalidGguf(_)), "{n}: {e}");
        }
    }

    #[test]
    fn lying_lengths_are_refused_without_allocating() {
        let mut b = sample();
        // The first key's length (bytes 24..32) claims far more than the file holds.
        b[24..32].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let e = check_bytes(&b).unwrap_err();
        assert!(e.to_string().contains("claims"), "{e}");
        let mut b = sample();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_bytes(&b).is_err());
        let mut b = sample();
        b[0] = b'X';
        assert!(check_bytes(&b).unwrap_err().to_string().contains("magic"));
        let mut b = sample();
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(check_bytes(&b), Err(LlmError::Unsupported(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check_bytes(&bytes);
            let mut b = b"GGUF\x03\x00\x00\x00".to_vec();
            b.extend_from_slice(&bytes);
            let _ = check_bytes(&b);
        }

        #[test]
        fn mutated_files_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut b = sample();
            for (i, v) in edits {
                let i = i.index(b.len());
                b[i] = v;
            }
            let _ = check_bytes(&b);
        }
    }
}
