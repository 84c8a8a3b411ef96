//! Reading MNIST-format IDX files (gzipped or not).
//!
//! Format: big-endian `u32` magic (`0x0000_0803` for images, `0x0000_0801` for labels), then one
//! big-endian `u32` per dimension, then the bytes. A file is taken as gzip when it starts with
//! the gzip magic, whatever its name.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

const IMAGES_MAGIC: u32 = 0x0803;
const LABELS_MAGIC: u32 = 0x0801;

/// Images as read from an IDX3 file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
    pub digests: Digests,
}

/// The SHA-256 (hex) of an IDX file as stored (what `sha256sum` shows), and of its content:
/// the header and the payload it promises, as read after any gzip, so that the same data
/// hashes alike zipped or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Digests {
    pub file: String,
    pub content: String,
}

/// What an IDX file holds.
struct Idx {
    shape: Vec<usize>,
    payload: Vec<u8>,
    digests: Digests,
}

/// Reads an IDX file's header (checking its magic number) and the payload it promises,
/// un-gzipping it when it is gzip; whatever follows the payload is not read (nor
/// decompressed).
fn read_idx(path: &Path, magic: u32, dims: usize) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut reader: Box<dyn Read> = if raw.starts_with(&[0x1f, 0x8b]) {
        // Multi-member: gzip allows several members in one file (e.g. `cat a.gz b.gz`).
        Box::new(flate2::read::MultiGzDecoder::new(raw.as_slice()))
    } else {
        Box::new(raw.as_slice())
    };
    let corrupt =
        |e: std::io::Error| Error::data(path, format!("corrupt or truncated gzip data: {e}"));
    let header_len = 4 + 4 * dims;
    let mut header = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(corrupt)?;
    let (shape, expected) = parse_header(path, &header, magic, dims)?;
    let mut payload = Vec::new();
    reader
        .take(expected as u64)
        .read_to_end(&mut payload)
        .map_err(corrupt)?;
    if payload.len() < expected {
        return Err(Error::data(
            path,
            format!(
                "truncated data: header promises {expected} bytes, file holds {}",
                payload.len()
            ),
        ));
    }
    use sha2::{Digest, Sha256};
    let hex = |d: &[u8]| crate::hash::hex(d);
    let content = Sha256::new().chain_update(&header).chain_update(&payload);
    let digests = Digests {
        file: hex(&Sha256::digest(&raw)),
        content: hex(&content.finalize()),
    };
    Ok(Idx {
        shape,
        payload,
        digests,
    })
}

/// Parses a header: checks the magic number and returns the dimensions and the payload's
/// size.
fn parse_header(path: &Path, bytes: &[u8], magic: u32, dims: usize) -> Result<(Vec<usize>, usize)> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < header_len {
        return Err(Error::data(
            path,
            format!(
                "truncated header: {} bytes, an IDX header here needs {header_len}",
                bytes.len()
            ),
        ));
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(Error::data(
            path,
            format!("bad magic number 0x{found:08x}, expected 0x{magic:08x}"),
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("header dimensions {shape:?} overflow")))?;
    Ok((shape, expected))
}

/// Reads an IDX3 image file.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let idx = read_idx(path, IMAGES_MAGIC, 3)?;
    Ok(IdxImages {
        count: idx.shape[0],
        rows: idx.shape[1],
        cols: idx.shape[2],
        pixels: idx.payload,
        digests: idx.digests,
    })
}

/// Reads an IDX1 label file (one byte a label), with the SHA-256 of its content (see
/// [`Digests`]).
pub fn read_labels(path: &Path) -> Result<(Vec<u8>, Digests)> {
    let Idx {
        payload, digests, ..
    } = read_idx(path, LABELS_MAGIC, 1)?;
    Ok((payload, digests))
}
