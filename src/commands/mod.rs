//! One file per subcommand: each adapts its clap arguments to the flow and domain layers
//! below and prints the result (`pub fn run(ui, ctx, args)`).

pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod diff;
pub(crate) mod export;
pub(crate) mod fetch;
pub(crate) mod hook;
pub(crate) mod import_table;
pub(crate) mod init;
pub(crate) mod install;
pub(crate) mod log;
pub(crate) mod man;
pub(crate) mod prune;
pub(crate) mod push;
pub(crate) mod remote;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod show;
pub(crate) mod snapshot;
pub(crate) mod status;
pub(crate) mod verify;
