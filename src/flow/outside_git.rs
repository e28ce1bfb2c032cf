//! Where a directory outside any git repository keeps its store: `--store DIR`, else
//! `DBGUARD_STORE`, else the per-user default `<data dir>/dbguard/stores/<name>-<hash>`,
//! keyed by the directory's canonical path. The store has the same format as a
//! repository's; its settings live in a private git config inside it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::Source;
use crate::error::CommandError;

/// In the store of a directory outside git: the private git directory whose config holds
/// that directory's settings (see `Repo::for_directory`).
pub(crate) const PRIVATE_GIT_DIR: &str = "directory.git";

/// The store root for `dir` (canonical) and where that choice came from. `option` is
/// `--store`, relative to `dir`.
pub(crate) fn store_root(
    dir: &Path,
    option: Option<&Path>,
) -> Result<(PathBuf, Source), CommandError> {
    if let Some(store) = option {
        return Ok((dir.join(store), Source::CommandLine));
    }
    if let Some(store) = crate::env::store_dir() {
        return Ok((dir.join(store), Source::Environment));
    }
    let data = crate::env::user_data_dir().ok_or_else(|| {
        CommandError::new(format!(
            "{} is not inside a git repository, and there is no per-user data directory for its store (neither XDG_DATA_HOME nor HOME is set)",
            dir.display()
        ))
        .hint("name a store: `dbguard --store DIR …` or DBGUARD_STORE=DIR")
    })?;
    Ok((
        data.join("dbguard").join("stores").join(place_name(dir)),
        Source::Default,
    ))
}

/// `<last component>-<16 hex digits of SHA-256 of the path>`: the per-user name of a
/// directory (its store outside git, its default export folder), readable in a listing,
/// and two directories with the same name never share one.
pub(crate) fn place_name(dir: &Path) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_matches(|c| c == '-' || c == '.');
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    if base.is_empty() {
        format!("root-{hash}")
    } else {
        format!("{base}-{hash}")
    }
}

/// Where `export` writes without `--out`: `<data dir>/dbguard/exports/<place name>` for
/// the working tree or directory `dir`, outside it, so that `git clean -fdx` or deleting
/// the clone leaves the exports alone.
pub(crate) fn default_export_dir(dir: &Path) -> Result<PathBuf, CommandError> {
    let data = crate::env::user_data_dir().ok_or_else(|| {
        CommandError::new("there is no per-user data directory for the default export folder (neither XDG_DATA_HOME nor HOME is set)")
            .hint("name the folder: `dbguard export --out DIR`")
    })?;
    Ok(data.join("dbguard").join("exports").join(place_name(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_readable_and_keyed_by_the_whole_path() {
        let a = place_name(Path::new("/scratch/crawl"));
        let b = place_name(Path::new("/home/x/crawl"));
        assert!(
            a.starts_with("crawl-") && a.len() == "crawl-".len() + 16,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, place_name(Path::new("/scratch/crawl")));
        assert!(place_name(Path::new("/")).starts_with("root-"));
        assert!(
            place_name(Path::new("/a/b c/../"))
                .chars()
                .all(|c| c != ' ' && c != '/')
        );
    }
}
