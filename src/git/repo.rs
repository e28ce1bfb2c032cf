//! The repository as libgit2 sees it (worktree, common dir, the git state of a path, the
//! paths two commits differ in) and `RepoPath`, the validated worktree-relative path.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Output;

use serde::Serialize;

use super::GitRunner;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RepoError {
    #[error("{0} is not inside a git repository")]
    NotARepo(PathBuf),
    #[error("{0} is a bare repository: it has no working tree with databases in it")]
    Bare(PathBuf),
    #[error("cannot read the git repository at {path}: {message}")]
    Git { path: PathBuf, message: String },
    #[error("cannot run git: {0}")]
    Spawn(#[source] io::Error),
    #[error("{path} is outside the working tree {worktree}")]
    OutsideWorktree { path: PathBuf, worktree: PathBuf },
    #[error("{0:?} is not a usable path inside the working tree")]
    BadPath(String),
    #[error("{0:?} is inside a .git directory, which belongs to git")]
    GitDir(String),
}

/// How git sees a database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GitState {
    /// Committed and unchanged.
    Tracked,
    /// Committed, with local changes.
    Modified,
    Untracked,
    Ignored,
}

impl GitState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GitState::Tracked => "tracked",
            GitState::Modified => "modified",
            GitState::Untracked => "untracked",
            GitState::Ignored => "ignored",
        }
    }

    /// Tracked files are the ones git will overwrite with old committed copies.
    pub(crate) fn under_version_control(self) -> bool {
        matches!(self, GitState::Tracked | GitState::Modified)
    }
}

/// A validated worktree-relative path (`/`-separated, no `..`, not absolute, no `.git`
/// component anywhere). Everything that writes into the worktree takes one, so no catalog
/// entry can make dbguard write outside it or into a repository's git directory (hooks,
/// config: code that git runs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) struct RepoPath(String);

impl RepoPath {
    pub(crate) fn new(text: &str) -> Result<RepoPath, RepoError> {
        let bad = || RepoError::BadPath(text.to_string());
        let path = Path::new(text);
        if text.is_empty() || path.is_absolute() || text.contains('\0') {
            return Err(bad());
        }
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_str().ok_or_else(bad)?),
                Component::CurDir => {}
                _ => return Err(bad()),
            }
        }
        if parts.is_empty() {
            return Err(bad());
        }
        if parts.iter().any(|part| is_dot_git(part)) {
            return Err(RepoError::GitDir(text.to_string()));
        }
        Ok(RepoPath(parts.join("/")))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn in_worktree(&self, worktree: &Path) -> PathBuf {
        worktree.join(&self.0)
    }
}

impl std::fmt::Display for RepoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Repo {
    pub(crate) git: git2::Repository,
    /// Canonical worktree root.
    pub(crate) worktree: PathBuf,
    /// `git rev-parse --git-common-dir`: shared by all linked worktrees.
    pub(crate) common_dir: PathBuf,
}

impl Repo {
    pub(crate) fn discover(start: &Path) -> Result<Repo, RepoError> {
        let git = git2::Repository::discover(start).map_err(|e| {
            if e.code() == git2::ErrorCode::NotFound {
                RepoError::NotARepo(start.to_path_buf())
            } else {
                RepoError::Git {
                    path: start.to_path_buf(),
                    message: e.message().to_string(),
                }
            }
        })?;
        if git.is_bare() {
            return Err(RepoError::Bare(git.path().to_path_buf()));
        }
        let worktree = git
            .workdir()
            .ok_or_else(|| RepoError::Bare(git.path().to_path_buf()))?;
        let worktree = worktree
            .canonicalize()
            .unwrap_or_else(|_| worktree.to_path_buf());
        let common_dir = git
            .commondir()
            .canonicalize()
            .unwrap_or_else(|_| git.commondir().to_path_buf());
        Ok(Repo {
            git,
            worktree,
            common_dir,
        })
    }

    /// The default store location, shared by every worktree and out of reach of
    /// checkout, clean and stash.
    pub(crate) fn default_store_dir(&self) -> PathBuf {
        self.common_dir.join("dbguard")
    }

    /// The commit HEAD points at, if any.
    pub(crate) fn head(&self) -> Option<String> {
        self.git
            .head()
            .ok()
            .and_then(|h| h.target())
            .map(|oid| oid.to_string())
    }

    pub(crate) fn git_state(&self, path: &RepoPath) -> GitState {
        match self.git.status_file(Path::new(path.as_str())) {
            Ok(status) if status.is_ignored() => GitState::Ignored,
            Ok(status) if status.is_wt_new() => GitState::Untracked,
            Ok(status) if status.is_empty() => GitState::Tracked,
            Ok(status) if status.is_index_new() && !status.is_wt_modified() => GitState::Modified,
            Ok(_) => GitState::Modified,
            // Not in the index nor known to the status machinery: treat as untracked.
            Err(_) => GitState::Untracked,
        }
    }

    /// Turn a user-supplied path (relative to `cwd`) into a worktree path.
    pub(crate) fn relative(&self, cwd: &Path, user_path: &Path) -> Result<RepoPath, RepoError> {
        let absolute = if user_path.is_absolute() {
            user_path.to_path_buf()
        } else {
            cwd.join(user_path)
        };
        // Canonicalise the parent only: the file itself may be a symlink we must not follow,
        // or may not exist any more (restoring a deleted database).
        let parent = absolute.parent().unwrap_or(Path::new("/"));
        let name = absolute.file_name().unwrap_or_else(|| OsStr::new(""));
        let parent = normalize(parent);
        let full = parent.canonicalize().unwrap_or(parent).join(name);
        let relative =
            full.strip_prefix(&self.worktree)
                .map_err(|_| RepoError::OutsideWorktree {
                    path: user_path.to_path_buf(),
                    worktree: self.worktree.clone(),
                })?;
        RepoPath::new(&relative.to_string_lossy())
    }
}

impl Repo {
    /// Paths that differ between two commits (both sides of renames), via libgit2 in
    /// process so hooks stay fast.
    pub(crate) fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<String>, RepoError> {
        let fail = |e: git2::Error| RepoError::Git {
            path: self.worktree.clone(),
            message: e.message().to_string(),
        };
        let tree = |rev: &str| -> Result<Option<git2::Tree<'_>>, RepoError> {
            // The all-zero id (a fresh clone's "previous HEAD") means "no tree".
            if rev.chars().all(|c| c == '0') {
                return Ok(None);
            }
            let object = self.git.revparse_single(rev).map_err(fail)?;
            Ok(Some(object.peel_to_tree().map_err(fail)?))
        };
        let (old, new) = (tree(from)?, tree(to)?);
        let diff = self
            .git
            .diff_tree_to_tree(old.as_ref(), new.as_ref(), None)
            .map_err(fail)?;
        let mut paths = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(path) = file.path().and_then(|p| p.to_str())
                    && !paths.iter().any(|known: &String| known == path)
                {
                    paths.push(path.to_string());
                }
            }
        }
        Ok(paths)
    }
}

/// Whether a path component names a git directory the way git's own `verify_path` sees
/// it: `.git` in any case (case-insensitive filesystems open `.GIT` as `.git`), with the
/// trailing dots and spaces Windows drops, or as its 8.3 short name `git~1`. Git refuses
/// to check such paths out; dbguard refuses to write them.
fn is_dot_git(part: &str) -> bool {
    let trimmed = part.trim_end_matches(['.', ' ']);
    trimmed.eq_ignore_ascii_case(".git") || part.eq_ignore_ascii_case("git~1")
}

/// Resolve `.` and `..` lexically (for paths that may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Repo {
    /// A git query run in the worktree (see [`GitRunner::query`]), for commands that
    /// parse git's output or need its effect.
    pub(crate) fn query_git<I, S>(&self, args: I) -> Result<Output, RepoError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GitRunner::default()
            .query(&self.worktree)
            .args(args)
            .output()
            .map_err(RepoError::Spawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_are_validated() {
        assert_eq!(RepoPath::new("a/./b.db").unwrap().as_str(), "a/b.db");
        for bad in [
            "",
            "/etc/passwd",
            "../x.db",
            "a/../../x",
            ".git/config",
            "./.git/x",
            "nested/.git/hooks/post-checkout",
            "nested/.GIT/hooks/post-checkout",
            "a/.Git",
            "a/.git. /hooks/x",
            "GIT~1/config",
        ] {
            assert!(RepoPath::new(bad).is_err(), "{bad} should be rejected");
        }
        for good in [
            ".gitignore",
            "a/.github/x.db",
            "a/git/x.db",
            "x.git",
            "a/..git",
        ] {
            assert!(RepoPath::new(good).is_ok(), "{good} should be accepted");
        }
        assert!(RepoPath::new("dir with space/ünï.db").is_ok());
    }
}
