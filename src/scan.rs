//! Find database files in a worktree (tracked, modified, untracked and ignored alike),
//! recognised by their header bytes, never by their names.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::db::{self, DbKind, Sniff};
use crate::git::{GitState, Repo, RepoError, RepoPath};

/// A database file found in the worktree.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DbFile {
    pub(crate) path: RepoPath,
    pub(crate) kind: DbKind,
    pub(crate) git: GitState,
    pub(crate) size: u64,
}

/// A file that was looked at and left alone, with the reason (shown on request).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Skipped {
    pub(crate) path: String,
    pub(crate) reason: String,
}

#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) databases: Vec<DbFile>,
    pub(crate) skipped: Vec<Skipped>,
    /// Directories not descended into because a configured exclusion names them.
    pub(crate) excluded: Vec<PathBuf>,
}

/// The name a restore stages its image under, next to the file it replaces:
/// `.<name>.dbguard-restore-<pid>`. Renamed over `<name>` when complete; a killed restore
/// leaves it behind (see [`restore_staging_pid`]).
pub(crate) fn restore_staging_name(name: &str, pid: u32) -> String {
    format!(".{name}.dbguard-restore-{pid}")
}

/// The pid in a restore staging file's name, `None` for any other name. Such files are
/// never databases of the user's: scans skip them and restores remove stale ones.
pub(crate) fn restore_staging_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once(".dbguard-restore-")?;
    if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Smaller than one SQLite page (512 bytes) cannot hold a database worth keeping.
pub(crate) const MIN_DATABASE_SIZE: u64 = 512;

/// Why an explicitly named path cannot be snapshotted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("{path} does not exist")]
    Missing { path: String },
    #[error("{path} is not a database: {reason}")]
    NotDatabase { path: String, reason: String },
    #[error("{path} is outside the working tree {worktree}")]
    Outside { path: String, worktree: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Scanner<'a> {
    pub(crate) repo: &'a Repo,
    /// Directory names never descended into (e.g. `node_modules`).
    pub(crate) exclude_dirs: &'a [String],
    /// The store, if configured inside the worktree.
    pub(crate) store_dir: &'a Path,
}

impl Scanner<'_> {
    /// Every database in the worktree.
    pub(crate) fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        self.walk(&self.repo.worktree.clone(), &mut scan);
        scan.databases.sort_by(|a, b| a.path.cmp(&b.path));
        scan
    }

    /// Databases under `dir` (a directory inside the worktree).
    pub(crate) fn scan_under(&self, dir: &Path) -> Scan {
        let mut scan = Scan::default();
        self.walk(dir, &mut scan);
        scan.databases.sort_by(|a, b| a.path.cmp(&b.path));
        scan
    }

    fn walk(&self, dir: &Path, scan: &mut Scan) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if file_type.is_dir() {
                if self.exclude_dirs.iter().any(|d| *d == name)
                    && !name.eq_ignore_ascii_case(".git")
                {
                    scan.excluded.push(path);
                    continue;
                }
                // `.GIT` too: git refuses such paths (see `RepoPath`), so nothing there is
                // the worktree's.
                if name.eq_ignore_ascii_case(".git")
                    || path == self.store_dir
                    // A nested repository (submodule): its databases belong to it.
                    || (path != self.repo.worktree && path.join(".git").exists())
                {
                    continue;
                }
                self.walk(&path, scan);
            } else if restore_staging_pid(&name).is_some() {
                // A restore's half-written (or killed) staging copy, not a database.
                continue;
            } else if file_type.is_file() {
                match self.inspect(&path) {
                    Ok(Some(found)) => scan.databases.push(found),
                    Ok(None) => {}
                    Err(skip) => scan.skipped.push(skip),
                }
            } else if file_type.is_symlink()
                && let Ok(Sniff::Database(_)) = db::sniff(&path)
            {
                scan.skipped.push(Skipped {
                    path: self.display(&path),
                    reason: "a symlink to a database: snapshot its target instead".into(),
                });
            }
        }
    }

    fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.repo.worktree)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Look at one regular file found by the walk: `Ok(None)` when it is not a database.
    fn inspect(&self, path: &Path) -> Result<Option<DbFile>, Skipped> {
        let Ok(meta) = fs::metadata(path) else {
            return Ok(None);
        };
        if meta.len() < MIN_DATABASE_SIZE {
            return Ok(None);
        }
        let kind = match db::sniff(path) {
            Ok(Sniff::Database(kind)) => kind,
            _ => return Ok(None),
        };
        let relative = self.display(path);
        let repo_path = RepoPath::new(&relative).map_err(|error| Skipped {
            path: relative.clone(),
            reason: match error {
                RepoError::GitDir(_) => "it is inside a .git directory".into(),
                _ => "its name is not valid UTF-8".into(),
            },
        })?;
        Ok(Some(DbFile {
            git: self.repo.git_state(&repo_path),
            path: repo_path,
            kind,
            size: meta.len(),
        }))
    }

    /// The same scanner without the configured exclusions: for paths git is about to
    /// touch, which are protected wherever they live.
    pub(crate) fn unfiltered(&self) -> Scanner<'_> {
        Scanner {
            repo: self.repo,
            exclude_dirs: &[],
            store_dir: self.store_dir,
        }
    }

    /// Whether a worktree-relative path lies in (or is) a directory that the configured
    /// exclusions keep out of [`Scanner::scan`].
    pub(crate) fn is_excluded(&self, relative: &Path) -> bool {
        relative.components().any(|c| {
            c.as_os_str()
                .to_str()
                .is_some_and(|name| self.exclude_dirs.iter().any(|d| d == name))
        })
    }

    /// Databases that [`Scanner::scan`] left out because of an exclusion, at or below the
    /// worktree-relative `relative` (every excluded directory in `scan` when it is empty):
    /// the planner's probe, so that git's own list of paths decides what is at risk.
    pub(crate) fn excluded_databases(&self, scan: &Scan, relative: &Path) -> Vec<DbFile> {
        let unfiltered = self.unfiltered();
        if relative.as_os_str().is_empty() {
            return scan
                .excluded
                .iter()
                .flat_map(|dir| unfiltered.scan_under(dir).databases)
                .collect();
        }
        if !self.is_excluded(relative) {
            return Vec::new();
        }
        let absolute = self.repo.worktree.join(relative);
        match fs::symlink_metadata(&absolute) {
            Ok(meta) if meta.is_dir() => unfiltered.scan_under(&absolute).databases,
            Ok(meta) if meta.is_file() => unfiltered
                .inspect(&absolute)
                .ok()
                .flatten()
                .into_iter()
                .collect(),
            Ok(_) => Vec::new(),
            // Gone: a database may sit where git wants a directory (`x.db/file`).
            Err(_) => absolute
                .ancestors()
                .skip(1)
                .take_while(|dir| {
                    dir.starts_with(&self.repo.worktree) && *dir != self.repo.worktree
                })
                .find(|dir| dir.is_file())
                .and_then(|file| unfiltered.inspect(file).ok().flatten())
                .into_iter()
                .collect(),
        }
    }

    /// Every database in the worktree plus the tracked ones that exclusions hide: what a
    /// hook snapshots before a merge or rebase, which overwrites tracked files wherever
    /// they are. (Reading the index is cheap; walking excluded trees is not.)
    pub(crate) fn scan_with_tracked(&self) -> Scan {
        let mut scan = self.scan();
        if scan.excluded.is_empty() {
            return scan;
        }
        let Ok(index) = self.repo.git.index() else {
            return scan;
        };
        let unfiltered = self.unfiltered();
        for entry in index.iter() {
            let Ok(relative) = std::str::from_utf8(&entry.path) else {
                continue;
            };
            if !self.is_excluded(Path::new(relative)) {
                continue;
            }
            if let Ok(Some(found)) = unfiltered.inspect(&self.repo.worktree.join(relative))
                && !scan.databases.iter().any(|d| d.path == found.path)
            {
                scan.databases.push(found);
            }
        }
        scan.databases.sort_by(|a, b| a.path.cmp(&b.path));
        scan
    }

    /// Resolve a path the user named: a database file, or a directory to scan.
    pub(crate) fn explicit(&self, cwd: &Path, user_path: &Path) -> Result<Vec<DbFile>, ScanError> {
        let shown = user_path.display().to_string();
        let absolute: PathBuf = if user_path.is_absolute() {
            user_path.to_path_buf()
        } else {
            cwd.join(user_path)
        };
        let meta = fs::symlink_metadata(&absolute).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ScanError::Missing {
                    path: shown.clone(),
                }
            } else {
                ScanError::Io {
                    path: shown.clone(),
                    source: e,
                }
            }
        })?;
        let not_db = |reason: &str| ScanError::NotDatabase {
            path: shown.clone(),
            reason: reason.to_string(),
        };
        if meta.file_type().is_symlink() {
            return Err(not_db("it is a symlink; name the file it points to"));
        }
        if meta.is_dir() {
            let inside = absolute
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&self.repo.worktree));
            if !inside {
                return Err(ScanError::Outside {
                    path: shown,
                    worktree: self.repo.worktree.display().to_string(),
                });
            }
            return Ok(self.scan_under(&absolute).databases);
        }
        if !meta.is_file() {
            return Err(not_db("it is not a regular file"));
        }
        if absolute
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(restore_staging_pid)
            .is_some()
        {
            return Err(not_db(
                "it is a restore's staging copy (a restore was interrupted); the next restore of that database removes it",
            ));
        }
        let kind = match db::sniff(&absolute).map_err(|e| ScanError::Io {
            path: shown.clone(),
            source: e,
        })? {
            Sniff::Database(kind) => kind,
            Sniff::NotDatabase(reason) => return Err(not_db(reason)),
        };
        let path = self
            .repo
            .relative(cwd, user_path)
            .map_err(|e| not_db(&e.to_string()))?;
        Ok(vec![DbFile {
            git: self.repo.git_state(&path),
            path,
            kind,
            size: meta.len(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_staging_names_round_trip_and_nothing_else_matches() {
        let name = restore_staging_name("big.db", 4242);
        assert_eq!(name, ".big.db.dbguard-restore-4242");
        assert_eq!(restore_staging_pid(&name), Some(4242));
        for other in [
            "big.db",
            ".big.db",
            "big.db.dbguard-restore-1",
            "..dbguard-restore-1",
            ".big.db.dbguard-restore-",
            ".big.db.dbguard-restore-12x",
            ".big.db.dbguard-moved-20260101T000000",
        ] {
            assert_eq!(restore_staging_pid(other), None, "{other}");
        }
    }
}
