//! The round store: every finished round, appended as one CSV line the moment it finishes, so
//! an interrupted sweep loses nothing and a rerun reuses what matches.
//!
//! A line is written with one `write_all` and flushed; a crash can leave at most a last line
//! without its newline, which reading ignores. Reading keeps the last record per key, and
//! [`RoundStore::compact`] rewrites the file (temp file + rename) with one line per key, so
//! identical reruns do not grow it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::report::RoundRecord;

/// What identifies a round's result: the same key always gives the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoundKey {
    pub spec_hash: String,
    pub data_seed: u64,
    pub init_seed: u64,
    pub data_hash: String,
    pub pairs: usize,
    pub epochs: usize,
    pub version: String,
}

/// The store file and what it held when opened.
#[derive(Debug)]
pub struct RoundStore {
    path: PathBuf,
    records: BTreeMap<RoundKey, RoundRecord>,
}

impl RoundStore {
    /// Opens (or starts) the store at `path`. Unreadable lines are skipped, never fatal: the
    /// store is a cache, and a round it lacks is simply trained again.
    pub fn open(path: &Path) -> Result<Self> {
        let mut records = BTreeMap::new();
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            // Only complete lines: a crash mid-write leaves a last line with no newline.
            let complete = match text.rfind('\n') {
                Some(i) => &text[..=i],
                None => "",
            };
            for line in complete.lines() {
                if let Some(r) = RoundRecord::from_store_line(line) {
                    records.insert(r.key(), r);
                }
            }
        }
        Ok(RoundStore {
            path: path.to_path_buf(),
            records,
        })
    }

    /// The stored result for `key`, if any.
    pub fn get(&self, key: &RoundKey) -> Option<&RoundRecord> {
        self.records.get(key)
    }

    /// Appends `r` durably (one write, then flush and sync).
    pub fn append(&mut self, r: &RoundRecord) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let line = format!("{}\n", r.to_store_line());
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.records.insert(r.key(), r.clone());
        Ok(())
    }

    /// Rewrites the file with one line per key.
    pub fn compact(&self) -> Result<()> {
        let text: String = self
            .records
            .values()
            .map(|r| format!("{}\n", r.to_store_line()))
            .collect();
        crate::report::write_atomic(&self.path, text.as_bytes())
    }
}
