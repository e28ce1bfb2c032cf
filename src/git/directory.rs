//! A directory outside git seen through the same `Repo` facade: a private, empty git
//! directory (kept in dbguard's store, never in the user's directory) whose working tree
//! is the user's directory. Its config file holds that directory's settings (remotes,
//! autopush) and every file in it reads as untracked, so the code that serves a
//! repository serves a plain directory without a second path through it.

use std::path::Path;

use super::{Repo, RepoError};

impl Repo {
    /// The private git directory `git_dir` (created empty on first use) with `worktree`,
    /// a directory that is not inside any git repository, as its working tree. Nothing
    /// is ever written into `worktree` by this: no `.git`, no gitlink.
    pub(crate) fn for_directory(git_dir: &Path, worktree: &Path) -> Result<Repo, RepoError> {
        let fail = |e: git2::Error| RepoError::Git {
            path: git_dir.to_path_buf(),
            message: e.message().to_string(),
        };
        let git = if git_dir.join("HEAD").exists() {
            git2::Repository::open_bare(git_dir).map_err(fail)?
        } else {
            git2::Repository::init_bare(git_dir).map_err(fail)?
        };
        let worktree = worktree
            .canonicalize()
            .unwrap_or_else(|_| worktree.to_path_buf());
        // In memory only (`update_gitlink` false): the private directory stays bare on
        // disk and the user's directory is left untouched.
        git.set_workdir(&worktree, false).map_err(fail)?;
        let common_dir = git_dir
            .canonicalize()
            .unwrap_or_else(|_| git_dir.to_path_buf());
        Ok(Repo {
            git,
            worktree,
            common_dir,
        })
    }
}
