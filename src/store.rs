//! The round store: every finished round, appended as one line the moment it finishes, so an
//! interrupted sweep loses nothing and a rerun reuses what matches.
//!
//! Guarantees:
//! - **Interruption.** A line is written with one `write_all` and synced; a crash leaves at
//!   most a last line without its newline, which reading ignores.
//! - **Damage.** Reading skips every line that is not valid UTF-8 or does not parse and
//!   range-check as a record ([`RoundRecord::from_store_line`]); its round is trained again.
//! - **Concurrency.** Any number of processes may run on one store at once. Appends and
//!   compaction hold an exclusive lock on a separate lock file, and compaction merges what
//!   the file holds on disk with what this process knows before replacing it (temporary file
//!   with a unique name, then rename), so no process loses another's rounds.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::{Lock, write_atomic};
use crate::record::{RoundKey, RoundRecord};

/// The store file and what it held when opened (plus what this process appended).
#[derive(Debug)]
pub struct RoundStore {
    path: PathBuf,
    lock: PathBuf,
    records: BTreeMap<RoundKey, RoundRecord>,
}

/// The records in the store file at `path`, last one per key; bad lines are skipped.
fn read_records(path: &Path) -> Result<BTreeMap<RoundKey, RoundRecord>> {
    let mut records = BTreeMap::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(records),
        Err(e) => return Err(Error::io(path, e)),
    };
    // Only complete lines: a crash mid-write leaves a last line with no newline.
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[..i],
        None => &[][..],
    };
    for line in complete.split(|&b| b == b'\n') {
        if let Some(r) = std::str::from_utf8(line)
            .ok()
            .and_then(RoundRecord::from_store_line)
        {
            records.insert(r.key(), r);
        }
    }
    Ok(records)
}

impl RoundStore {
    /// Opens (or starts) the store at `path`, creating its directory. Unreadable lines are
    /// skipped, never fatal: the store is a cache, and a round it lacks is trained again.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fs::create_dir(dir)?;
        }
        let lock = path.with_extension("lock");
        let records = {
            let _held = Lock::exclusive(&lock)?;
            read_records(path)?
        };
        Ok(RoundStore {
            path: path.to_path_buf(),
            lock,
            records,
        })
    }

    /// The stored result for `key`, if any.
    pub fn get(&self, key: &RoundKey) -> Option<&RoundRecord> {
        self.records.get(key)
    }

    /// Every record this store knows, in key order.
    pub fn records(&self) -> impl Iterator<Item = &RoundRecord> {
        self.records.values()
    }

    /// Appends `r` durably (one write, then sync), under the lock.
    pub fn append(&mut self, r: &RoundRecord) -> Result<()> {
        let _held = Lock::exclusive(&self.lock)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let line = format!("{}\n", r.to_store_line());
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(&self.path, e))?;
        self.records.insert(r.key(), r.clone());
        Ok(())
    }

    /// Rewrites the file with one line per key: what is on disk now (other processes may have
    /// added rounds) merged with what this process holds. On failure the file is unchanged.
    pub fn compact(&mut self) -> Result<()> {
        let _held = Lock::exclusive(&self.lock)?;
        let mut merged = read_records(&self.path)?;
        merged.extend(std::mem::take(&mut self.records));
        self.records = merged;
        let text: String = self
            .records
            .values()
            .map(|r| format!("{}\n", r.to_store_line()))
            .collect();
        write_atomic(&self.path, text.as_bytes())
    }
}
