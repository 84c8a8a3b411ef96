//! The round store: every finished round is written the moment it finishes, as a file of its
//! own, so an interrupted sweep loses nothing and a rerun reuses what matches.
//!
//! Guarantees:
//! - **Interruption.** A round's file is written to a temporary file with a unique name and
//!   renamed into place: it is there whole or not at all.
//! - **Damage.** Reading skips every file that is not valid UTF-8 or does not parse and
//!   range-check as a record ([`RoundRecord::from_store_line`]); its round is trained again.
//! - **Concurrency.** Any number of processes, on one machine or on many sharing a file
//!   system (NFS included: a rename within a directory is atomic there), may write one store
//!   at once: each round is its own file, named by its key, and nothing is ever rewritten in
//!   place, appended to or compacted, so no writer can lose or duplicate another's rounds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::{create_dir, remove_abandoned, write_atomic};
use crate::record::{RoundKey, RoundRecord};

/// The store directory and what it held when opened (plus what this process stored).
#[derive(Debug)]
pub struct RoundStore {
    dir: PathBuf,
    records: BTreeMap<RoundKey, RoundRecord>,
}

/// The file a round with `key` is stored in: a hash of the key, so that the same round is
/// always the same file.
fn file_name(key: &RoundKey) -> String {
    format!("{}.csv", file_stem(key))
}

/// What a round's files are named by.
fn file_stem(key: &RoundKey) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        key.spec_hash,
        key.data_seed,
        key.init_seed,
        key.data_hash,
        key.pairs,
        key.epochs,
        key.version
    );
    crate::hash::short_of(text.as_bytes())
}

/// Where the kept weights of the round with `key` are in the store directory `dir`.
pub fn weights_path(dir: &Path, key: &RoundKey) -> PathBuf {
    dir.join(format!("{}.safetensors", file_stem(key)))
}

impl RoundStore {
    /// Opens (or starts) the store in `dir`, creating it. Unreadable files are skipped, never
    /// fatal: the store is a cache, and a round it lacks is trained again.
    pub fn open(dir: &Path) -> Result<Self> {
        create_dir(dir)?;
        remove_abandoned(dir);
        let mut records = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        // Read in name order: the same store gives the same records whatever the directory
        // listing's order.
        paths.sort();
        for p in paths {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            // A file is whole only with its line end: a cut one is damage, not a round.
            if let Some(r) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.strip_suffix('\n'))
                .and_then(RoundRecord::from_store_line)
            {
                records.insert(r.key(), r);
            }
        }
        Ok(RoundStore {
            dir: dir.to_path_buf(),
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

    /// Where the kept weights of the round with `key` are (see [`crate::weights`]).
    pub fn weights_path(&self, key: &RoundKey) -> PathBuf {
        weights_path(&self.dir, key)
    }

    /// Stores `r` as its own file, atomically (replacing the same round stored before).
    pub fn put(&mut self, r: &RoundRecord) -> Result<()> {
        let key = r.key();
        let line = format!("{}\n", r.to_store_line());
        write_atomic(&self.dir.join(file_name(&key)), line.as_bytes())?;
        self.records.insert(key, r.clone());
        Ok(())
    }
}
