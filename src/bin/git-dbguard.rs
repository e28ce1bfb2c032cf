//! `git dbguard …`: git runs `git-dbguard` from PATH for subcommands it does not know.
//! This program only hands over to `dbguard` (the one next to it, else the one on PATH)
//! with the same arguments, so it links neither dbguard's library nor DuckDB: the second
//! binary costs no second build and no second 80 MB.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("dbguard")))
        .filter(|path| path.is_file());
    let program = sibling.unwrap_or_else(|| PathBuf::from("dbguard"));
    // exec replaces this process: dbguard gets git's stdio, signals and exit code as is.
    let error = Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "Error: git-dbguard cannot run {}: {error}",
        program.display()
    );
    eprintln!(
        "  Hint: install dbguard next to git-dbguard or on PATH (README: cargo install --locked --path .)"
    );
    ExitCode::from(127)
}
