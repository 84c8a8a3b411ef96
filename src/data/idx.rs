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
}

/// Reads the whole file, un-gzipping it when it is gzip.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // Multi-member: gzip allows several members in one file (e.g. `cat a.gz b.gz`).
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses the header: checks the magic number and returns the dimensions and the payload.
fn parse_header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    dims: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
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
    let payload = &bytes[header_len..];
    if payload.len() < expected {
        return Err(Error::data(
            path,
            format!(
                "truncated data: header promises {expected} bytes, file holds {}",
                payload.len()
            ),
        ));
    }
    Ok((shape, &payload[..expected]))
}

/// Reads an IDX3 image file.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_bytes(path)?;
    let (shape, payload) = parse_header(path, &bytes, IMAGES_MAGIC, 3)?;
    Ok(IdxImages {
        count: shape[0],
        rows: shape[1],
        cols: shape[2],
        pixels: payload.to_vec(),
    })
}

/// Reads an IDX1 label file; every label must be a digit 0..=9.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_bytes(path)?;
    let (_, payload) = parse_header(path, &bytes, LABELS_MAGIC, 1)?;
    if let Some(i) = payload.iter().position(|&l| l > 9) {
        return Err(Error::data(
            path,
            format!("label {} at index {i} is above 9", payload[i]),
        ));
    }
    Ok(payload.to_vec())
}
