//! Planning: turn a git argv into an [`Operation`] and compute which database files git is about to overwrite or delete.
//!
//! Everything here asks the real `git` binary (never libgit2: its checkout dry run fires no
//! notifications). The planner never prints and never changes the repository: it only runs
//! read-only queries (`rev-parse`, `diff-tree`, `status`, `ls-files`, `merge-tree --write-tree`
//! which writes only unreachable objects, `clean -n`).
//!
//! Fail safe: when a risky command cannot be planned (unknown option, unresolvable revision, a
//! shell alias, git failing), [`plan`] returns every database as at risk with
//! [`Plan::fallback_reason`] saying why. Only truly invalid input is an `Err`.
//!
//! The folder, in the order a command line travels through it:
//! - `subcommands.rs`: which git subcommands are builtins, which ones the planner models, and
//!   which ones the shell function sends straight to git.
//! - `invocation.rs`: argv → [`GitInvocation`] (git's global options, `-C`, aliases).
//! - `options.rs`: a small model of git's parse-options and the option tables of each
//!   planned subcommand.
//! - `operation.rs`: [`GitInvocation`] → [`Operation`] (what the command does, as far as
//!   the planner cares).
//! - `assess.rs`: [`Operation`] → the databases at risk, by asking git what it would write.
//! - `databases.rs`: the databases the plan knows about (with the [`Probe`] for excluded
//!   ones) and the at-risk accumulator.
//! - `query.rs`: running git for a query, and parsing what it prints.
//! - `worktree_removal.rs`: the linked worktree `git worktree remove` deletes whole.
//! - this file: [`Plan`], [`plan`] and the fail-safe [`Plan::everything`].
//! - `tests.rs`: the planner end to end on real repositories (`test_repo.rs` makes them).

use std::path::{Path, PathBuf};

mod assess;
mod databases;
mod invocation;
mod operation;
mod options;
mod query;
mod subcommands;
#[cfg(test)]
mod test_repo;
#[cfg(test)]
mod tests;
mod worktree_removal;

pub(crate) use databases::Probe;
use databases::{DbSet, Risk};
pub(crate) use invocation::{GitInvocation, parse_invocation, parse_running_invocation};
pub(crate) use operation::{Operation, pull_fetch_args};
use query::Git;
#[cfg(test)]
pub(crate) use subcommands::guarded_subcommands;
pub(crate) use subcommands::{PASS_THROUGH_SUBCOMMANDS, is_risky_subcommand, writes_unplanned};
pub(crate) use worktree_removal::removed_worktree;

/// Errors from planning. Most planning failures become a fallback [`Plan`] instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    /// The git binary could not be started.
    #[error("could not run git in {dir}")]
    Spawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A git query exited unsuccessfully.
    #[error("`git {args}` failed in {dir} (exit {code:?}): {stderr}")]
    Git {
        args: String,
        dir: PathBuf,
        code: Option<i32>,
        stderr: String,
    },
    /// The argv is not something git itself would accept.
    #[error("invalid git command line: {0}")]
    InvalidArgs(String),
    /// Aliases expand into each other forever (git refuses these too).
    #[error("alias loop: {0}")]
    AliasLoop(String),
    /// A database path handed to the planner is not worktree-relative.
    #[error("not a worktree-relative path: {0}")]
    InvalidPath(PathBuf),
    /// The command is understood but cannot be planned (becomes a fallback plan).
    #[error("{0}")]
    Unplannable(String),
}

/// Why a database is at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RiskReason {
    /// Git writes another version over it (including an ignored/untracked file the target tracks).
    Overwritten,
    /// The target does not track it: git deletes it.
    Deleted,
    /// Its local modifications are thrown away (reset --hard, restore, checkout -- path…).
    Discarded,
    /// `git clean` removes it.
    Cleaned,
    /// `git stash` moves it (or its changes) into the stash.
    Stashed,
    /// `git rm` deletes it.
    Removed,
    /// Planning failed; snapshotted to be safe.
    Fallback,
}

/// One database path git is about to touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AtRisk {
    /// Worktree-relative path, as given in `databases`.
    pub(crate) path: PathBuf,
    pub(crate) why: RiskReason,
}

/// The result of planning one git invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) operation: Operation,
    /// Sorted by path, one entry per path.
    pub(crate) at_risk: Vec<AtRisk>,
    /// `Some(why)` when planning failed and every database is listed.
    pub(crate) fallback_reason: Option<String>,
}

impl Plan {
    /// The fail-safe plan: every database is at risk (the probe's excluded ones too).
    pub(crate) fn everything(
        databases: &[PathBuf],
        probe: Option<Probe<'_>>,
        reason: &str,
    ) -> Plan {
        let dbs = DbSet::new(databases, probe).unwrap_or_else(|_| DbSet::probe_only(probe));
        let mut risk = Risk::default();
        dbs.discover(Path::new(""));
        for db in databases.iter().cloned().chain(dbs.all()) {
            risk.add(&db, RiskReason::Fallback);
        }
        Plan {
            operation: Operation::Other,
            at_risk: risk.into_vec(),
            fallback_reason: Some(reason.to_string()),
        }
    }
}

/// Plan `inv`: which of `databases` (worktree-relative paths of database files on disk,
/// relative to `worktree_root`) git is about to overwrite or delete.
///
/// Never fails for a plannable-but-unknown situation: a risky command that cannot be planned
/// yields every database with [`Plan::fallback_reason`] set. `Err` only for invalid input
/// (a database path that is absolute or escapes the worktree).
pub(crate) fn plan(
    inv: &GitInvocation,
    worktree_root: &Path,
    databases: &[PathBuf],
    probe: Option<Probe<'_>>,
) -> Result<Plan, PlanError> {
    let dbs = DbSet::new(databases, probe)?;
    let git = Git::new(inv);
    let fallback = |operation: Operation, reason: String| Plan {
        operation,
        ..Plan::everything(databases, probe, &reason)
    };
    if let Some(shell) = &inv.shell_alias {
        let name = inv.subcommand.clone().unwrap_or_default();
        return Ok(fallback(
            Operation::Unknown {
                subcommand: name.clone(),
            },
            format!(
                "`git {name}` is a shell alias (`!{shell}`): dbguard cannot tell what it touches"
            ),
        ));
    }
    let operation = match operation::parse_operation(&git, inv) {
        Ok(op) => op,
        Err(e) => {
            let sub = inv.subcommand.clone().unwrap_or_default();
            return Ok(fallback(
                Operation::Unknown { subcommand: sub },
                format!("could not plan the command: {e}"),
            ));
        }
    };
    if operation == Operation::Other || (databases.is_empty() && probe.is_none()) {
        return Ok(Plan {
            operation,
            at_risk: Vec::new(),
            fallback_reason: None,
        });
    }
    let mut risk = Risk::default();
    match assess::assess(&git, &operation, worktree_root, &dbs, &mut risk) {
        Ok(()) => Ok(Plan {
            operation,
            at_risk: risk.into_vec(),
            fallback_reason: None,
        }),
        Err(e) => Ok(fallback(
            operation,
            format!("could not plan the command: {e}"),
        )),
    }
}
