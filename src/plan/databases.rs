//! The databases a plan knows about, and the at-risk accumulator.
//!
//! The caller hands over the databases its scan found; a [`Probe`] finds the ones its
//! exclusions left out wherever git reports a path. [`Risk`] collects, per database, the
//! first reason found for it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::{AtRisk, PlanError, RiskReason};

/// Finds databases the caller's scan left out (configured exclusions) at or below a
/// worktree-relative path that git reported: `dir/` → every database under it, a file →
/// itself when it is a database. Planning learns what git will touch from git itself, so an
/// exclusion can save scanning time but never hides a database from the plan.
pub(crate) type Probe<'p> = &'p dyn Fn(&Path) -> Vec<PathBuf>;

pub(super) struct DbSet<'p> {
    /// normalized path → the caller's path (or the probe's, for a database it found).
    by_norm: RefCell<BTreeMap<PathBuf, PathBuf>>,
    probe: Option<Probe<'p>>,
}

impl<'p> DbSet<'p> {
    pub(super) fn new(databases: &[PathBuf], probe: Option<Probe<'p>>) -> Result<Self, PlanError> {
        let mut by_norm = BTreeMap::new();
        for db in databases {
            let n = normalize(db)
                .filter(|n| !n.as_os_str().is_empty())
                .ok_or_else(|| PlanError::InvalidPath(db.clone()))?;
            by_norm.insert(n, db.clone());
        }
        Ok(DbSet {
            by_norm: RefCell::new(by_norm),
            probe,
        })
    }

    /// No database yet, only the probe (the fail-safe plan for invalid database paths).
    pub(super) fn probe_only(probe: Option<Probe<'p>>) -> Self {
        DbSet {
            by_norm: RefCell::default(),
            probe,
        }
    }

    /// Learn the databases the probe finds at or below `path`.
    pub(super) fn discover(&self, path: &Path) {
        let Some(probe) = self.probe else { return };
        for found in probe(path) {
            if let Some(n) = normalize(&found).filter(|n| !n.as_os_str().is_empty()) {
                self.by_norm.borrow_mut().entry(n).or_insert(found);
            }
        }
    }

    pub(super) fn all(&self) -> Vec<PathBuf> {
        self.by_norm.borrow().values().cloned().collect()
    }

    /// `:(top,literal)<path>` for each database.
    pub(super) fn literal_pathspecs(&self) -> Vec<OsString> {
        self.by_norm
            .borrow()
            .keys()
            .map(|p| {
                let mut s = OsString::from(":(top,literal)");
                s.push(p.as_os_str());
                s
            })
            .collect()
    }

    /// The database at exactly `path`.
    fn exact(&self, path: &Path) -> Option<PathBuf> {
        let n = normalize(path)?;
        if !self.by_norm.borrow().contains_key(&n) {
            self.discover(&n);
        }
        self.by_norm.borrow().get(&n).cloned()
    }

    /// Databases at `path`, under it (a directory), or whose parent directory is `path`
    /// (a file replacing a directory).
    pub(super) fn touched_by(&self, path: &Path) -> Vec<PathBuf> {
        let Some(n) = normalize(path) else {
            return Vec::new();
        };
        self.discover(&n);
        let by_norm = self.by_norm.borrow();
        let mut hits: Vec<PathBuf> = by_norm
            .range(n.clone()..)
            .take_while(|(k, _)| k.starts_with(&n))
            .map(|(_, v)| v.clone())
            .collect();
        // a database where the target has a directory: `db` is a prefix of `path`
        for anc in n.ancestors().skip(1) {
            if anc.as_os_str().is_empty() {
                break;
            }
            if let Some(v) = by_norm.get(anc) {
                hits.push(v.clone());
            }
        }
        hits
    }
}

#[derive(Default)]
pub(super) struct Risk {
    map: BTreeMap<PathBuf, RiskReason>,
}

impl Risk {
    pub(super) fn add(&mut self, path: &Path, why: RiskReason) {
        self.map.entry(path.to_owned()).or_insert(why);
    }

    /// Add every database touched by `changes` (exact, below a changed directory, or where
    /// a changed path needs the database's place as a directory).
    pub(super) fn add_changes(&mut self, dbs: &DbSet, changes: &[(PathBuf, RiskReason)]) {
        for (p, why) in changes {
            for db in dbs.touched_by(p) {
                let why = if db.as_path() == p.as_path() || dbs.exact(p).as_ref() == Some(&db) {
                    *why
                } else {
                    RiskReason::Overwritten
                };
                self.add(&db, why);
            }
        }
    }

    /// Add the databases at exactly these paths.
    pub(super) fn add_exact<'p>(
        &mut self,
        dbs: &DbSet,
        paths: impl IntoIterator<Item = &'p PathBuf>,
        why: RiskReason,
    ) {
        for p in paths {
            if let Some(db) = dbs.exact(p) {
                self.add(&db, why);
            }
        }
    }

    pub(super) fn into_vec(self) -> Vec<AtRisk> {
        self.map
            .into_iter()
            .map(|(path, why)| AtRisk { path, why })
            .collect()
    }
}

/// Lexically normalize a worktree-relative path (`a/./b/../c` → `a/c`); `None` if it escapes.
pub(super) fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical_and_refuses_escapes() {
        assert_eq!(
            normalize(Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(normalize(Path::new("../x")), None);
    }
}
