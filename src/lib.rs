//! dbguard: snapshots SQLite and DuckDB files before git overwrites or deletes them,
//! and restores them after: detect → snapshot (+ census) → store → compare → restore.
//!
//! # The house
//! Four layers; a module imports only from its own layer or below (`tests/layers.rs`
//! fails on an import that points up):
//!
//! 1. **commands** — [`cli`] (clap, one flat dispatch) and `commands/` (one file per
//!    subcommand: adapts arguments, prints results).
//! 2. **flow** — orchestration that talks to the user through `ui::Ui`: `flow/guard`
//!    (plan → snapshot → run git → compare → offer), `flow/snapshot` (snapshot and
//!    report), `flow/offer` (the restore prompt), `flow/hook` (what each git hook does),
//!    `flow/context` (repository or directory outside git + settings), `flow/outside_git`
//!    (where a directory outside git keeps its store). `error` turns domain errors into
//!    `CommandError` (kind → exit code, hints) and prints them in one place.
//! 3. **domain** — no `Ui`, no `CommandError`; `thiserror` enums that carry paths and
//!    sources: `plan/` (argv → what git will overwrite or delete), `restore/` (the engine),
//!    `compare` (census → shrinks), `export/` and `import`, `retention`, `hooks` (shim
//!    files, marker blocks, the watch file).
//! 4. **base** — `git/` (the libgit2 facade, `RepoPath`, and `git::run`, the one place
//!    that starts git processes), `db/` (sniff, copy, census for SQLite and DuckDB),
//!    `store/` (chunks, catalog — private to the store — verify, prune, `store/replica`:
//!    its copies on remotes), `remote/` (object storage: S3 or a directory), `scan`,
//!    `config`, `env` (every environment variable), `clock`, `ui::format` (pure text),
//!    and `fsmonitor` (the `core.fsmonitor` hook program: answers git, starts the guard).
//!
//! `testing` is the one test harness, shared by unit and integration tests.

#![deny(unsafe_code)]

pub mod cli;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod compare;
pub(crate) mod config;
pub(crate) mod db;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod export;
pub(crate) mod flow;
#[doc(hidden)]
pub mod fsmonitor;
pub(crate) mod git;
pub(crate) mod hooks;
pub(crate) mod import;
pub(crate) mod plan;
pub(crate) mod remote;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod scan;
pub(crate) mod store;
#[doc(hidden)]
pub mod testing;
pub(crate) mod ui;
