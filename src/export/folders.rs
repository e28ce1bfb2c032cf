//! Export folders as dbguard makes them: `<database>/<snapshot time>/` with a marker file
//! inside, and keeping only the newest N of them. Only folders that carry the marker and
//! are named as an export's time are ever removed: nothing else under `--out` is touched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file in every export folder that says dbguard made it (and so may remove it).
pub(crate) const MARKER: &str = ".dbguard-export";

/// Mark `dir` (a finished export folder) as dbguard's.
pub(crate) fn mark(dir: &Path, what: &str) -> io::Result<()> {
    fs::write(
        dir.join(MARKER),
        format!(
            "{what}\nmade by dbguard export; `dbguard export --keep N` may remove this folder\n"
        ),
    )
}

/// `20261121T114500Z`: the name [`super::export_dir`] gives a folder.
fn is_export_time(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

/// In `database_dir` (one database's folder under `--out`), remove all but the `keep`
/// newest export folders; returns the ones removed. Names sort by time.
pub(crate) fn keep_newest(database_dir: &Path, keep: usize) -> io::Result<Vec<PathBuf>> {
    let mut ours = Vec::new();
    for entry in fs::read_dir(database_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_ours = name.to_str().is_some_and(is_export_time)
            // symlink_metadata: a symlink to a folder elsewhere is not ours to delete.
            && entry.path().symlink_metadata().is_ok_and(|m| m.is_dir())
            && entry.path().join(MARKER).symlink_metadata().is_ok_and(|m| m.is_file());
        if is_ours {
            ours.push(entry.path());
        }
    }
    ours.sort();
    let extra = ours.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = ours.into_iter().take(extra).collect();
    for dir in &removed {
        fs::remove_dir_all(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_folders_named_as_times_are_removed_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path();
        for name in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"] {
            fs::create_dir(db.join(name)).unwrap();
            mark(&db.join(name), "test").unwrap();
        }
        // Not ours: no marker, a name that is not a time, a plain file.
        fs::create_dir(db.join("20250101T000000Z")).unwrap();
        fs::create_dir(db.join("notes")).unwrap();
        fs::write(db.join("notes").join(MARKER), "").unwrap();
        fs::write(db.join("20240101T000000Z"), "a file").unwrap();
        let removed = keep_newest(db, 2).unwrap();
        assert_eq!(removed, vec![db.join("20260101T000000Z")]);
        for kept in [
            "20260102T000000Z",
            "20260103T000000Z",
            "20250101T000000Z",
            "notes",
            "20240101T000000Z",
        ] {
            assert!(db.join(kept).exists(), "{kept}");
        }
        assert!(keep_newest(db, 0).unwrap().len() == 2);
        assert!(db.join("20250101T000000Z").exists());
    }
}
