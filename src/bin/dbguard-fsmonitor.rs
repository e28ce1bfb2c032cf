//! `dbguard-fsmonitor 2 <token>`: the program `dbguard install` names in git's
//! `core.fsmonitor`. git runs it on every `git status`, so it compiles dbguard's
//! `fsmonitor` module on its own instead of linking the library: linking it brings
//! DuckDB along, whose static initialisers run at every start.

// The library's side of the module (markers, the install record) is unused here.
#[allow(dead_code)]
#[path = "../fsmonitor/mod.rs"]
mod fsmonitor;

fn main() -> std::process::ExitCode {
    fsmonitor::hook_main()
}
