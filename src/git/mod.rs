//! Git: how dbguard starts git processes ([`run`]).

pub mod run;

pub use run::{GUARD_ENV, GitError, GitRunner, exit_code};
