//! Git: the repository facade (libgit2, in process: worktree, common dir, status of a
//! path, changed paths), validated worktree paths, and the one runner that starts git
//! processes.

pub mod repo;
pub mod run;

pub use repo::{GitState, Repo, RepoError, RepoPath};
pub use run::{FSMONITOR_OFF, GUARD_ENV, GitRunner, exit_code};
