//! The IDX file format (LeCun's MNIST container), gzip-compressed or raw. Generic over shape;
//! only the unsigned-byte element type (0x08) is supported, which every MNIST-family file uses.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Largest payload accepted (2 GiB): EMNIST, the biggest IDX dataset in use, is ~0.55 GB.
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 31;
/// Deflate cannot expand data by more than ~1032:1; a header claiming more is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;
const IDX_UBYTE: u8 = 0x08;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major payload; its length is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file (`.gz` by magic bytes, otherwise raw) of the given rank.
///
/// Every defect is an [`Error::Idx`] naming the file: wrong magic or type, wrong rank, a payload
/// shorter or longer than the header says, and headers claiming more data than the file could
/// hold (rejected before anything is allocated).
///
/// ```no_run
/// let labels = mnist_kit::data::idx::read_idx("data/mnist/t10k-labels-idx1-ubyte.gz", 1)?;
/// assert_eq!(labels.dims, vec![10_000]);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn read_idx(path: impl AsRef<Path>, rank: usize) -> Result<IdxArray> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    parse_source(BufReader::new(file), file_len, path, rank)
}

/// Parses the bytes of an IDX file, gzip-compressed or raw, as [`read_idx`] reads a file.
pub fn decode_idx(bytes: &[u8], name: &str, rank: usize) -> Result<IdxArray> {
    parse_source(bytes, bytes.len() as u64, Path::new(name), rank)
}

/// Gzip (by its magic bytes) or raw IDX from `reader` of `len` bytes.
fn parse_source(mut reader: impl Read, len: u64, path: &Path, rank: usize) -> Result<IdxArray> {
    let mut magic = [0u8; 2];
    read_exact(
        &mut reader,
        &mut magic,
        path,
        "the file is empty or shorter than a header",
    )?;
    // Put the two bytes back in front of the stream.
    let chained = std::io::Cursor::new(magic).chain(reader);
    if magic == [0x1f, 0x8b] {
        let decoder = flate2::read::GzDecoder::new(chained);
        parse_stream(
            decoder,
            path,
            rank,
            len.saturating_mul(MAX_DEFLATE_RATIO),
            None,
        )
    } else {
        parse_stream(chained, path, rank, len, Some(len))
    }
}

/// Parses IDX bytes already in memory (raw, not compressed). `name` is used in errors.
pub fn parse_idx(bytes: &[u8], name: &str, rank: usize) -> Result<IdxArray> {
    let len = bytes.len() as u64;
    parse_stream(bytes, Path::new(name), rank, len, Some(len))
}

/// `size_bound`: the most bytes the stream can possibly hold; `exact_len`: its known size.
fn parse_stream(
    mut reader: impl Read,
    path: &Path,
    rank: usize,
    size_bound: u64,
    exact_len: Option<u64>,
) -> Result<IdxArray> {
    let bad = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let (dims, payload) = read_header(&mut reader, path, rank)?;
    let header_len = 4 + 4 * rank as u64;
    if let Some(len) = exact_len
        && len != header_len + payload
    {
        return Err(bad(format!(
            "header {dims:?} implies {} bytes in total, file has {len} ({})",
            header_len + payload,
            if len < header_len + payload {
                "truncated"
            } else {
                "trailing data"
            }
        )));
    }
    if header_len + payload > size_bound {
        return Err(bad(format!(
            "header {dims:?} claims {payload} bytes of data but the file can hold at most {}",
            size_bound.saturating_sub(header_len)
        )));
    }
    // Allocation is bounded by the checks above; read one byte more to detect trailing data.
    let mut data = Vec::with_capacity(payload as usize);
    reader
        .by_ref()
        .take(payload + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(format!("cannot read payload: {e}")))?;
    if (data.len() as u64) < payload {
        return Err(bad(format!(
            "truncated: header {dims:?} implies {payload} payload bytes, found {}",
            data.len()
        )));
    }
    if (data.len() as u64) > payload {
        return Err(bad(format!(
            "trailing data after the {payload} payload bytes of {dims:?}"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Reads and checks the magic and the dimensions: the dimensions and the payload's size.
fn read_header(reader: &mut impl Read, path: &Path, rank: usize) -> Result<(Vec<usize>, u64)> {
    let bad = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 4];
    read_exact(
        reader,
        &mut magic,
        path,
        "file shorter than the 4-byte magic",
    )?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "bad magic {:02x}{:02x}{:02x}{:02x}: expected 0000 then type and rank",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != IDX_UBYTE {
        return Err(bad(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            magic[2]
        )));
    }
    if magic[3] as usize != rank {
        return Err(bad(format!(
            "rank {} but expected {rank} dimension(s)",
            magic[3]
        )));
    }
    let mut dims = Vec::with_capacity(rank);
    let mut payload: u64 = 1;
    for i in 0..rank {
        let mut d = [0u8; 4];
        read_exact(reader, &mut d, path, "header ends before its dimensions")?;
        let d = u32::from_be_bytes(d);
        payload = payload
            .checked_mul(u64::from(d))
            .filter(|&p| p <= MAX_PAYLOAD_BYTES)
            .ok_or_else(|| {
                bad(format!(
                    "dimension {i} = {d} makes the payload larger than the {MAX_PAYLOAD_BYTES}-byte limit"
                ))
            })?;
        dims.push(d as usize);
    }
    Ok((dims, payload))
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| Error::Idx {
        path: PathBuf::from(path),
        reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
            what.to_string()
        } else {
            format!("{what}: {e}")
        },
    })
}

/// Writes `dims` and `data` as a raw IDX file (unsigned bytes). Used by tests and tools.
pub fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, IDX_UBYTE, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defects() {
        let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = parse_idx(&bytes, "mem", 2).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(parse_idx(&bytes, "mem", 1).is_err(), "wrong rank");
        assert!(parse_idx(&bytes[..9], "mem", 2).is_err(), "truncated");
        let mut long = bytes.clone();
        long.push(0);
        assert!(parse_idx(&long, "mem", 2).is_err(), "trailing");
        let mut wrong_type = bytes.clone();
        wrong_type[2] = 0x0d;
        assert!(parse_idx(&wrong_type, "mem", 2).is_err(), "float type");
        let huge = encode_idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        let err = parse_idx(&huge, "mem", 3).unwrap_err().to_string();
        assert!(err.contains("limit"), "{err}");
    }
}
