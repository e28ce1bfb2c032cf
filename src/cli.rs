//! Command-line definition (clap derive), global options and dispatch.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands;
use crate::error::{CommandError, ErrorKind};
use crate::flow::Context;
use crate::flow::guard;
use crate::plan;
use crate::ui::{ColorChoice, Ui};

#[derive(Debug, Parser)]
#[command(
    name = "dbguard",
    version,
    about = "Snapshots SQLite and DuckDB files before git overwrites or deletes them, and restores them after",
    propagate_version = true,
    help_template = HELP_TEMPLATE
)]
pub(crate) struct Cli {
    /// Run as if dbguard was started in <DIR>.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Outside a git repository: the snapshot store to use (default: one per directory under ~/.local/share/dbguard/stores).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) store: Option<PathBuf>,
    /// When to use colour.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
    /// Print only errors and warnings.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Machine-readable JSON on stdout from: snapshot, log, show, status, diff, verify, restore, export, import-table, prune, config, remote, push, fetch. Other commands ignore it. Fields: README "JSON output", docs/json-schema.json.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Answer yes to every question.
    #[arg(short = 'y', long, global = true)]
    pub(crate) yes: bool,
    /// Run the git command even though no snapshot is taken (explicit override; before
    /// a git-wrapping subcommand: `dbguard --no-snapshot pull …`).
    #[arg(long)]
    pub(crate) no_snapshot: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Snapshot databases now (default: every database in the working tree).
    Snapshot(commands::snapshot::Args),
    /// List snapshots, newest first.
    Log(commands::log::Args),
    /// Show one snapshot: when, before which git command, rows per table.
    Show(commands::show::Args),
    /// Every database here: git state, size, rows now vs the last snapshot.
    Status(commands::status::Args),
    /// Re-read every stored chunk and check every snapshot.
    Verify(commands::verify::Args),
    /// Rows per table: now vs a snapshot, or between two snapshots.
    Diff(commands::diff::Args),
    /// Put a snapshot back: whole file, some tables, or to another path.
    Restore(commands::restore::Args),
    /// Print a shell function that routes risky git commands through dbguard.
    Init(commands::init::Args),
    /// Install dbguard's git hooks (keeping existing ones) and take a baseline snapshot.
    Install(commands::install::InstallArgs),
    /// Remove dbguard's blocks from the git hooks.
    Uninstall(commands::install::UninstallArgs),
    /// Stop tracking a database: snapshot, git rm --cached, .gitignore.
    Untrack(commands::install::UntrackArgs),
    /// The effective settings and where each came from.
    Config(commands::config::Args),
    /// Export a snapshot's tables to Parquet / JSON Lines (a database: snapshot it now).
    Export(commands::export::Args),
    /// Load one exported table (Parquet or JSON Lines) into a SQLite database.
    ImportTable(commands::import_table::Args),
    /// Delete snapshots a retention policy does not keep, and their unused chunks.
    Prune(commands::prune::Args),
    /// Remotes for copies of the store: S3 (or S3-compatible) buckets, other disks.
    Remote(commands::remote::Args),
    /// Upload the snapshots a remote lacks.
    Push(commands::push::Args),
    /// Bring a remote's snapshots into this store (a fresh clone, a new machine).
    Fetch(commands::fetch::Args),
    /// Snapshot and prune this working tree from cron (every 8 h, daily, weekly).
    Schedule(commands::schedule::Args),
    /// Play the story in a sandbox: forced pull, 900k → 5k rows, restore.
    Demo(commands::demo::Args),
    /// Print shell completions (bash, zsh, fish, powershell).
    #[command(
        after_long_help = "Examples:\n  dbguard completions bash > ~/.local/share/bash-completion/completions/dbguard\n  dbguard completions fish > ~/.config/fish/completions/dbguard.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(
        after_long_help = "Examples:\n  dbguard man | man -l -\n  dbguard man > ~/.local/share/man/man1/dbguard.1"
    )]
    Man,
    /// Run by the installed git hooks.
    #[command(hide = true)]
    Hook(commands::hook::Args),
    /// Snapshot what `git pull` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard pull\n  dbguard pull --rebase origin main\n\nArguments go to git exactly as given (`git help pull` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot pull …` overrides."
    )]
    Pull(GitArgs),
    /// Snapshot what `git reset` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard reset --hard origin/main\n\nArguments go to git exactly as given (`git help reset` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot reset …` overrides."
    )]
    Reset(GitArgs),
    /// Snapshot what `git checkout` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard checkout other-branch\n  dbguard checkout -- data/app.db\n\nArguments go to git exactly as given (`git help checkout` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot checkout …` overrides."
    )]
    Checkout(GitArgs),
    /// Snapshot what `git switch` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard switch other-branch\n\nArguments go to git exactly as given (`git help switch` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot switch …` overrides."
    )]
    Switch(GitArgs),
    /// Snapshot what `git merge` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard merge origin/main\n\nArguments go to git exactly as given (`git help merge` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot merge …` overrides."
    )]
    Merge(GitArgs),
    /// Snapshot what `git rebase` will overwrite, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard rebase origin/main\n\nArguments go to git exactly as given (`git help rebase` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot rebase …` overrides."
    )]
    Rebase(GitArgs),
    /// Snapshot what `git clean` will delete, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard clean -fdx\n\nArguments go to git exactly as given (`git help clean` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot clean …` overrides."
    )]
    Clean(GitArgs),
    /// Snapshot what `git stash` will take away, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard stash -u\n\nArguments go to git exactly as given (`git help stash` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot stash …` overrides."
    )]
    Stash(GitArgs),
    /// Snapshot what `git rm` will delete, then run it.
    #[command(
        after_long_help = "Examples:\n  dbguard rm -r data/\n\nArguments go to git exactly as given (`git help rm` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot rm …` overrides."
    )]
    Rm(GitArgs),
    /// Any git command, guarded (`dbguard git restore -- data.db`).
    #[command(
        after_long_help = "Examples:\n  dbguard git restore -- data/app.db\n  dbguard git up        (an alias: resolved through git config)\n\nArguments go to git exactly as given (`git help <command>` shows git's own options).\nIf a needed snapshot cannot be made, git does not run; `dbguard --no-snapshot git …` overrides."
    )]
    Git(GitArgs),
}

/// Subcommands in the groups `dbguard --help` shows them in. A unit test checks that
/// every visible subcommand is listed exactly once.
const HELP_TEMPLATE: &str = "\
{before-help}{name} {version}
{about-with-newline}
{usage-heading} {usage}

Protect:
  install     Git hooks that compare databases after checkout, merge and rebase
  uninstall   Remove dbguard's hook blocks, keeping everything else
  untrack     Take a database out of version control (snapshot first)
  pull, reset, checkout, switch, merge, rebase, clean, stash, rm
              Snapshot what git is about to overwrite, then run it
  git         Any git command, guarded (dbguard git restore -- data.db)
  init        Shell function that sends risky git commands through dbguard
  snapshot    Snapshot databases now
  schedule    Snapshot and prune from cron every 8 h, daily or weekly

Inspect:
  status      Every database: git state, rows now vs the last snapshot
  log         Snapshots, newest first
  show        One snapshot in full
  diff        Rows per table now vs a snapshot, or between two
  config      Effective settings and where they came from

Recover:
  restore     Put a snapshot back: whole file, some tables, or elsewhere
  export      Tables of a snapshot to Parquet / JSON Lines
  import-table
              Load one exported table into a SQLite database
  demo        Play the story in a sandbox

Off this machine:
  remote      Remotes: S3 or S3-compatible buckets (s3://), other disks (file://)
  push        Upload the snapshots a remote lacks
  fetch       Bring a remote's snapshots here (a fresh clone, a new machine)

Maintain:
  verify      Re-read every stored chunk and check every snapshot
  prune       Delete old snapshots by a retention policy
  completions Shell completions
  man         The man page

Options:
{options}

`dbguard <command> --help` shows examples.
{after-help}";

/// Arguments passed to git exactly as given.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct GitArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(crate) args: Vec<OsString>,
}

/// Subcommands whose arguments belong to git, not to dbguard: `git`, and one for each git
/// subcommand the planner models but `restore`, which is dbguard's own.
fn is_git_wrapper(name: &str) -> bool {
    name == "git" || (name != "restore" && plan::is_risky_subcommand(name))
}

/// Index of a git-wrapping subcommand in `argv`, skipping dbguard's own leading options.
/// Which options there are, and which take a value, comes from the clap definition, so
/// an option added there is skipped here too. An unknown option ends the search: clap
/// then reports it.
fn wrapper_position(argv: &[OsString]) -> Option<usize> {
    // Built only when a leading option is there to look up (hooks and `dbguard pull …`
    // start with the subcommand, and clap builds its own definition again to parse).
    let command = std::cell::OnceCell::new();
    let option = |matches: &dyn Fn(&clap::Arg) -> bool| {
        command
            .get_or_init(Cli::command)
            .get_arguments()
            .find(|arg| matches(arg))
            .map(|arg| arg.get_action().takes_values())
    };
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].to_str()?;
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            let takes_value = option(&|a| a.get_long() == Some(name))?;
            i += if takes_value && !inline_value { 2 } else { 1 };
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            // `-qy`, `-Cdir`, `-C dir`: flags up to the first one that takes a value,
            // which takes the rest of the word or, when nothing is left, the next one.
            let mut step = 1;
            for (at, short) in cluster.char_indices() {
                if option(&|a| a.get_short() == Some(short))? {
                    if at + short.len_utf8() == cluster.len() {
                        step = 2;
                    }
                    break;
                }
            }
            i += step;
        } else {
            return is_git_wrapper(arg).then_some(i);
        }
    }
    None
}

pub fn run() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Everything after a git-wrapping subcommand goes to git untouched, even `-q` or
    // `--help`, so clap only sees what comes before it.
    let wrapper = wrapper_position(&argv);
    let (parse, git_args) = match wrapper {
        Some(i) => (&argv[..=i], argv[i + 1..].to_vec()),
        None => (&argv[..], Vec::new()),
    };
    // `dbguard pull --help`: dbguard's part (what it does first, its override), then
    // where git's own options are. Any later `--help` is git's (`dbguard git pull --help`).
    if let Some(i) = wrapper
        && matches!(
            git_args.first().and_then(|a| a.to_str()),
            Some("--help" | "-h")
        )
    {
        return wrapper_help(argv[i].to_str().unwrap_or("git"));
    }
    let cli = match Cli::try_parse_from(parse) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                ErrorKind::Usage.exit_code()
            } else {
                0
            });
        }
    };
    let ui = Ui::new(cli.color, cli.quiet, cli.json, cli.yes);
    // A panic is a bug of dbguard's: Rust has printed where; say what it means and exit
    // with the internal-error code instead of the 101 of an unwinding main.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(&ui, &cli, git_args)
    }))
    .unwrap_or_else(|_| Err(internal_error()));
    let stdout_lost = crate::ui::finish_stdout();
    match result {
        Ok(code) => match stdout_lost {
            None => ExitCode::from(code),
            Some(std::io::ErrorKind::BrokenPipe) => {
                ExitCode::from(ErrorKind::BrokenPipe.exit_code())
            }
            // Whatever ran succeeded, but its output did not arrive: a script reading
            // it must not take the missing lines for an answer.
            Some(kind) => {
                let error = CommandError::new("the output could not be written")
                    .cause(std::io::Error::from(kind).to_string())
                    .hint("check the file or pipe stdout goes to (a full disk?)");
                error.report(&ui);
                ExitCode::from(error.exit_code())
            }
        },
        // Nobody reads stdout any more (`dbguard log | head`): nothing to say.
        Err(_) if stdout_lost == Some(std::io::ErrorKind::BrokenPipe) => {
            ExitCode::from(ErrorKind::BrokenPipe.exit_code())
        }
        Err(error) => {
            error.report(&ui);
            ExitCode::from(error.exit_code())
        }
    }
}

/// The help of a git-wrapping subcommand (clap's long help, with its examples), on stdout.
fn wrapper_help(name: &str) -> ExitCode {
    let mut command = Cli::command();
    command.build();
    let Some(sub) = command.find_subcommand_mut(name) else {
        return ExitCode::from(ErrorKind::Usage.exit_code());
    };
    let help = sub.render_long_help().to_string();
    let ui = Ui::new(ColorChoice::Never, false, false, false);
    ui.out_bytes(help.as_bytes());
    match crate::ui::finish_stdout() {
        Some(std::io::ErrorKind::BrokenPipe) => ExitCode::from(ErrorKind::BrokenPipe.exit_code()),
        Some(_) => ExitCode::from(ErrorKind::User.exit_code()),
        None => ExitCode::SUCCESS,
    }
}

fn internal_error() -> CommandError {
    CommandError::new("dbguard stopped on an internal error (a bug)")
        .with_kind(ErrorKind::Internal)
        .hint("please report it with the lines above and the command you ran: https://github.com/dbguard/dbguard/issues")
}

fn dispatch(ui: &Ui, cli: &Cli, git_args: Vec<OsString>) -> Result<u8, CommandError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CommandError::with_source("cannot read the current directory", e))?;
    let cwd = match &cli.dir {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    let ctx = || {
        Context::load(&cwd, cli.store.as_deref()).inspect(|ctx| {
            for warning in &ctx.settings.warnings {
                ui.warn(warning);
            }
        })
    };
    let guard = |subcommand: Option<&str>| {
        let argv: Vec<OsString> = subcommand
            .map(OsString::from)
            .into_iter()
            .chain(git_args.iter().cloned())
            .collect();
        let options = guard::GuardOptions {
            no_snapshot: cli.no_snapshot,
        };
        guard::run(ui, &cwd, &argv, &options)
    };
    let done = |result: Result<(), CommandError>| result.map(|()| 0);
    if crate::env::test_panic() && !matches!(cli.command, Command::Hook(_)) {
        panic!("DBGUARD_TEST_PANIC is set");
    }
    match &cli.command {
        Command::Snapshot(args) => done(commands::snapshot::run(ui, &ctx()?, args)),
        Command::Log(args) => done(commands::log::run(ui, &ctx()?, args)),
        Command::Show(args) => done(commands::show::run(ui, &ctx()?, args)),
        Command::Status(args) => done(commands::status::run(ui, &ctx()?, args)),
        Command::Verify(args) => done(commands::verify::run(ui, &ctx()?, args)),
        Command::Diff(args) => done(commands::diff::run(ui, &ctx()?, args)),
        Command::Restore(args) => done(commands::restore::run(ui, &ctx()?, args)),
        Command::Init(args) => done(commands::init::run(ui, args)),
        Command::Install(args) => done(commands::install::install(ui, &ctx()?, args)),
        Command::Uninstall(args) => done(commands::install::uninstall(ui, &ctx()?, args)),
        Command::Untrack(args) => done(commands::install::untrack(ui, &ctx()?, args)),
        Command::Config(args) => done(commands::config::run(ui, &ctx()?, args)),
        Command::Export(args) => done(commands::export::run(ui, &ctx()?, args)),
        Command::ImportTable(args) => done(commands::import_table::run(ui, &cwd, args)),
        Command::Prune(args) => done(commands::prune::run(ui, &ctx()?, args)),
        Command::Remote(args) => done(commands::remote::run(ui, &ctx()?, args)),
        Command::Push(args) => done(commands::push::run(ui, &ctx()?, args)),
        Command::Fetch(args) => done(commands::fetch::run(ui, &ctx()?, args)),
        Command::Schedule(args) => done(commands::schedule::run(ui, &ctx()?, args)),
        Command::Demo(args) => done(commands::demo::run(ui, args)),
        Command::Completions { shell } => {
            let script = commands::man::completions(*shell, "dbguard", &Cli::command());
            ui.out_bytes(&script);
            Ok(0)
        }
        Command::Man => {
            let page = commands::man::man_page(Cli::command())
                .map_err(|e| CommandError::with_source("cannot render the man page", e))?;
            ui.out_bytes(&page);
            Ok(0)
        }
        Command::Hook(args) => {
            let hook_ui = Ui {
                prefix: "dbguard: ",
                ..Ui::new(cli.color, cli.quiet, false, cli.yes)
            };
            // Hooks never break git: a bug in one is a warning, and git goes on.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if crate::env::test_panic() {
                    panic!("DBGUARD_TEST_PANIC is set");
                }
                commands::hook::run(&hook_ui, &cwd, args)
            }));
            Ok(ran.unwrap_or_else(|_| {
                hook_ui.warn(
                    "the hook stopped on an internal error (a bug; please report it); git goes on",
                );
                0
            }))
        }
        Command::Pull(_) => guard(Some("pull")),
        Command::Reset(_) => guard(Some("reset")),
        Command::Checkout(_) => guard(Some("checkout")),
        Command::Switch(_) => guard(Some("switch")),
        Command::Merge(_) => guard(Some("merge")),
        Command::Rebase(_) => guard(Some("rebase")),
        Command::Clean(_) => guard(Some("clean")),
        Command::Stash(_) => guard(Some("stash")),
        Command::Rm(_) => guard(Some("rm")),
        Command::Git(_) => guard(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_is_in_the_grouped_help() {
        let command = Cli::command();
        let groups = HELP_TEMPLATE.split("Options:").next().unwrap();
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            let listed = groups
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|word| *word == name)
                .count();
            assert!(listed >= 1, "{name} is missing from the grouped help");
        }
    }

    #[test]
    fn wrapper_arguments_are_split_off_before_clap() {
        let argv: Vec<OsString> = ["dbguard", "--yes", "-C", "x", "pull", "-q", "--help"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(wrapper_position(&argv), Some(4));
        let argv: Vec<OsString> = ["dbguard", "log", "pull"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(wrapper_position(&argv), None);
        let argv: Vec<OsString> = ["dbguard", "-qyCx", "--color=never", "--json", "reset"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(wrapper_position(&argv), Some(4));
        let argv: Vec<OsString> = ["dbguard", "-qC", "pull", "--color", "never", "checkout"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            wrapper_position(&argv),
            Some(5),
            "-qC takes `pull` as its DIR"
        );
        let argv: Vec<OsString> = ["dbguard", "--no-such-option", "pull"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            wrapper_position(&argv),
            None,
            "clap reports the unknown option"
        );
    }

    #[test]
    fn git_wrappers_are_exactly_the_subcommands_taking_git_arguments() {
        // (the hidden `hook` takes git's hook arguments, not a git command line)
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            let takes_git_args = sub.get_arguments().any(|a| a.is_trailing_var_arg_set());
            assert_eq!(
                is_git_wrapper(sub.get_name()),
                takes_git_args,
                "{}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
