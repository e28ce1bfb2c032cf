//! Git: the repository facade (libgit2, in process: worktree, common dir, status of a
//! path, changed paths), validated worktree paths, and the one runner that starts git
//! processes.

mod directory;
pub(crate) mod redact;
pub(crate) mod repo;
pub(crate) mod run;

pub(crate) use repo::{GitState, Repo, RepoError, RepoPath};
pub(crate) use run::{FSMONITOR_OFF, GUARD_ENV, GitRunner, exit_code};
