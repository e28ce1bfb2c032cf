//! `dbguard hook <name> [args…]` (hidden): the entry point of every installed git hook;
//! what each hook does is in [`crate::flow::hook`].

use std::ffi::OsString;
use std::path::Path;

use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The git hook being run.
    pub(crate) name: String,
    /// The arguments git passed to the hook.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(crate) args: Vec<OsString>,
}

pub(crate) fn run(ui: &Ui, cwd: &Path, args: &Args) -> u8 {
    crate::flow::hook_actions::run(ui, cwd, &args.name, &args.args)
}
