//! File helpers shared by the store and the reports: directories and atomic replacement.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// How old a temporary file is before it counts as abandoned: a write takes milliseconds, so
/// one this old was left by a process that was killed.
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary files in `dir` that killed writers left behind (older than an
/// hour; a younger one may be another process's write in progress). Best effort: what
/// cannot be read or removed stays.
pub fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let temp = p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with('.') && n.ends_with(".tmp")
        });
        let old = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > ABANDONED));
        if temp && old {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// A temporary path beside `path`, unique to this process and call, so that concurrent
/// writers (threads or processes) never write into each other's temporary file.
fn temp_beside(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// half-written file. On failure (a full disk, say) the temporary file is removed and `path`
/// keeps its old contents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    let tmp = temp_beside(path);
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_data()))
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails (here the rename: the target is a directory) leaves no temporary
    /// file behind and the target as it was.
    #[test]
    fn a_failed_atomic_write_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("lesser-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = dir.join("results.csv");
        std::fs::create_dir_all(target.join("in-the-way")).unwrap();
        assert!(write_atomic(&target, b"rows").is_err());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["results.csv"]);
        assert!(target.join("in-the-way").is_dir());
        // And a write that succeeds replaces the file whole.
        let file = dir.join("REPORT.md");
        write_atomic(&file, b"old").unwrap();
        write_atomic(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }
}
