//! `git dbguard …`: git runs `git-dbguard` from PATH for unknown subcommands.

fn main() -> std::process::ExitCode {
    dbguard::cli::run()
}
