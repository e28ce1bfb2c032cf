//! `dbguard install [--status]`, `dbguard uninstall` and `dbguard untrack PATH`: put
//! dbguard's blocks into the repository's git hooks (keeping whatever is there), take a
//! baseline snapshot, and help databases out of version control.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::CommandError;
use crate::flow::snapshot::{
    Lines, as_before, snapshot_operation, version_control_warning, warn_failures,
};
use crate::flow::{Context, command_line};
use crate::hook_files::{self, HookError, HookState, Install, Uninstall, fsmonitor_setting};
use crate::ui::{Tone, Ui, shell_quote};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard install              hooks + a baseline snapshot of every database
  dbguard install --status     what is installed where
  dbguard install --no-fsmonitor   hooks only; core.fsmonitor stays as it is

`core.fsmonitor` is set to dbguard-fsmonitor (the one next to dbguard), which git runs
before any command writes the working tree, so plain `git reset --hard`, `clean`,
`checkout`, `stash`, `pull`, … snapshot the databases they would overwrite or delete.
A hook already configured there (watchman's, scalar's) keeps running behind it.

Existing hooks (git-lfs, pre-commit, husky, lefthook, your own) keep running: dbguard
adds a marked block near the top of each hook file and `dbguard uninstall` removes only
that block. If a tool rewrites its hook files later (`git lfs update --force`, lefthook,
husky), `dbguard install --status` says so; run `dbguard install` again.")]
pub(crate) struct InstallArgs {
    /// Show which hooks are installed instead of installing.
    #[arg(long)]
    pub(crate) status: bool,
    /// Leave `core.fsmonitor` alone: plain git commands are then compared only after
    /// they ran (use `dbguard git …` or the shell function to snapshot before).
    #[arg(long)]
    pub(crate) no_fsmonitor: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Example:
  dbguard uninstall     removes dbguard's blocks; everything else in the hooks stays")]
pub(crate) struct UninstallArgs {}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Example:
  dbguard untrack posts.db

Takes a snapshot, runs `git rm --cached`, adds the path to .gitignore. Commit the
result. Caveat: when collaborators pull that commit, git deletes their copy of the file;
they should pull with `dbguard pull` (which snapshots it first) or back it up.")]
pub(crate) struct UntrackArgs {
    /// The tracked database to stop tracking.
    pub(crate) path: PathBuf,
}

fn hook_error(error: HookError) -> CommandError {
    CommandError::from_source(error)
        .hint("check the permissions of the hooks directory (`git rev-parse --git-path hooks`)")
}

pub(crate) fn install(ui: &Ui, ctx: &Context, args: &InstallArgs) -> Result<(), CommandError> {
    ctx.require_repository("install")?;
    let dir = hook_files::hooks_dir(&ctx.repo.worktree).map_err(hook_error)?;
    if args.status {
        let fsmonitor_guards = matches!(
            fsmonitor_setting::setting(&ctx.repo.git),
            Ok(fsmonitor_setting::Setting::Dbguard { .. })
        );
        show_status(ui, &dir, fsmonitor_guards)?;
        return show_fsmonitor(ui, ctx);
    }
    if dir.outside_git_dir {
        ui.warn(&format!(
            "core.hooksPath points outside .git ({}): other tools or repositories may share or rewrite these hooks",
            dir.path.display()
        ));
    }
    let mut changes =
        hook_files::install(&dir.path, hook_files::ALWAYS_HOOKS).map_err(hook_error)?;
    report_installed(ui, &changes);
    // The pre-write fallback hooks only when core.fsmonitor does not guard (see
    // hook_files::FALLBACK_HOOKS); they are decided even when setting it failed.
    let fsmonitor = if args.no_fsmonitor {
        Ok(false)
    } else {
        install_fsmonitor(ui, ctx)
    };
    if matches!(fsmonitor, Ok(true)) {
        for change in
            hook_files::remove(&dir.path, hook_files::FALLBACK_HOOKS).map_err(hook_error)?
        {
            let what = match &change.outcome {
                Uninstall::Removed | Uninstall::BlockRemoved => "dbguard's block removed",
                Uninstall::NotInstalled => "",
                Uninstall::Skipped(reason) => {
                    ui.warn(&format!(
                        "{}: dbguard's block left in place (it does nothing while core.fsmonitor is dbguard's): {reason}",
                        change.path.display()
                    ));
                    continue;
                }
            };
            let note = if what.is_empty() {
                String::new()
            } else {
                format!(" ({what})")
            };
            ui.status(&format!(
                "{:<22} not needed: core.fsmonitor snapshots before git writes{note}",
                change.hook
            ));
        }
    } else {
        let fallback =
            hook_files::install(&dir.path, hook_files::FALLBACK_HOOKS).map_err(hook_error)?;
        report_installed(ui, &fallback);
        changes.extend(fallback);
    }
    if let Err(e) = hook_files::replaced::record(&dir.git_dir, &hook_files::block_files(&changes)) {
        ui.warn(&format!("could not record which hooks hold dbguard's block ({e}): git will not say when another tool replaces them"));
    }
    let guarded_before = fsmonitor?;
    // Baseline: every database now, so the first checkout has something to compare with.
    let databases = ctx.scanner().scan().databases;
    if !databases.is_empty() {
        let mut store = ctx.store()?;
        let results = snapshot_operation(
            ui,
            ctx,
            &mut store,
            ("install", &command_line()),
            &databases,
            Some("baseline at install"),
            Lines::Every,
            &as_before,
        )?;
        warn_failures(ui, &results);
    }
    for database in databases.iter().filter(|d| d.git.under_version_control()) {
        version_control_warning(ui, &database.path);
    }
    if !guarded_before {
        ui.hint("to snapshot before `git pull` & co. as well: eval \"$(dbguard init bash)\" in your shell profile");
    }
    Ok(())
}

/// One line per hook that [`hook_files::install`] handled; a warning with the line to add by
/// hand for each file it left alone.
fn report_installed(ui: &Ui, changes: &[hook_files::HookChange<Install>]) {
    for change in changes {
        let what = match &change.outcome {
            Install::Created => "installed".to_string(),
            Install::Updated => "updated".to_string(),
            Install::AddedToExisting => "added to the existing hook".to_string(),
            Install::Unchanged => "already installed".to_string(),
            Install::KeptInCopy { copy, manager } => {
                format!("already installed in {} (run by {manager})", copy.display())
            }
            Install::Skipped {
                reason,
                add_yourself,
            } => {
                ui.warn(&format!("{}: left alone: {reason}", change.path.display()));
                ui.hint(&format!("add this line to it yourself: {add_yourself}"));
                continue;
            }
        };
        ui.status(&format!("{:<22} {what}", change.hook));
    }
}

fn fsmonitor_error(error: fsmonitor_setting::FsmonitorError) -> CommandError {
    CommandError::from_source(error)
        .hint("check that .git/config is writable, or install with --no-fsmonitor")
}

/// Name dbguard-fsmonitor in `core.fsmonitor`; whether plain git is now guarded before
/// it writes.
fn install_fsmonitor(ui: &Ui, ctx: &Context) -> Result<bool, CommandError> {
    let program = std::env::current_exe()
        .ok()
        .and_then(|exe| fsmonitor_setting::program_next_to(&exe));
    let Some(program) = program else {
        ui.warn(&format!(
            "{} is not next to this dbguard: plain git commands are compared only after they ran",
            crate::fsmonitor::PROGRAM
        ));
        ui.hint("install both programs: cargo install --locked --path . (README)");
        return Ok(false);
    };
    let daemon_works = git_version(ctx).is_some_and(|version| version >= (2, 55));
    let label = "core.fsmonitor";
    match fsmonitor_setting::install(&ctx.repo.git, &program, daemon_works).map_err(fsmonitor_error)? {
        fsmonitor_setting::Installed::Set { chained: None } => ui.status(&format!(
            "{label:<22} set: plain git commands snapshot databases before they overwrite them"
        )),
        fsmonitor_setting::Installed::Set {
            chained: Some(previous),
        } => ui.status(&format!(
            "{label:<22} set; the previous hook {previous} keeps running behind it"
        )),
        fsmonitor_setting::Installed::ReplacedDaemon => ui.status(&format!(
            "{label:<22} set; replaced `true`: git's built-in daemon has no Linux backend before git 2.55 (uninstall puts it back)"
        )),
        fsmonitor_setting::Installed::Unchanged => ui.status(&format!("{label:<22} already set")),
        fsmonitor_setting::Installed::KeptDaemon => {
            ui.warn("core.fsmonitor=true (git's built-in daemon) left as it is: dbguard cannot run behind it; plain git commands are compared only after they ran");
            ui.hint("to let dbguard guard them before: git config core.fsmonitor false && dbguard install");
            return Ok(false);
        }
    }
    Ok(true)
}

/// git's (major, minor) version, from `git version`.
fn git_version(ctx: &Context) -> Option<(u32, u32)> {
    let output = ctx.repo.query_git(["version"]).ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().nth(2)?.split('.');
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// Each hook's state; `fsmonitor_guards`: `core.fsmonitor` is dbguard's, so the
/// fallback hooks are not needed.
fn show_status(
    ui: &Ui,
    hooks_dir: &hook_files::HooksDir,
    fsmonitor_guards: bool,
) -> Result<(), CommandError> {
    let dir = &hooks_dir.path;
    ui.out(&format!("hooks directory: {}", dir.display()));
    let findings = hook_files::replaced::findings(&hooks_dir.git_dir);
    let replaced = &findings.replaced;
    for (hook, state) in hook_files::status(dir).map_err(hook_error)? {
        let replaced = replaced.iter().find(|r| r.path == dir.join(&hook));
        let text = match state {
            HookState::Missing { .. } if let Some(r) = replaced => {
                let what = match (r.deleted, r.by) {
                    (true, _) => "deleted since dbguard install".to_string(),
                    (false, Some(tool)) => format!("replaced by {tool}, without dbguard's block"),
                    (false, None) => "rewritten without dbguard's block".to_string(),
                };
                ui.paint(Tone::Bad, &format!("{what} (run dbguard install)"))
            }
            HookState::Installed {
                current: true,
                executable: true,
            } => ui.paint(Tone::Good, "installed"),
            HookState::Installed {
                executable: false, ..
            } => ui.paint(
                Tone::Bad,
                "installed but not executable (git ignores it; chmod +x)",
            ),
            HookState::Installed { current: false, .. } => {
                ui.paint(Tone::Warn, "installed, outdated (run dbguard install)")
            }
            HookState::Missing { .. }
                if fsmonitor_guards && hook_files::FALLBACK_HOOKS.contains(&hook.as_str()) =>
            {
                ui.paint(
                    Tone::Good,
                    "not needed: core.fsmonitor snapshots before git writes",
                )
            }
            HookState::Missing { file_exists: true } => ui.paint(
                Tone::Warn,
                "missing from the existing hook (run dbguard install)",
            ),
            HookState::Missing { file_exists: false } => ui.paint(Tone::Warn, "not installed"),
            HookState::InstalledInCopy {
                copy,
                manager,
                current,
            } => {
                let name = copy.file_name().unwrap_or_default().to_string_lossy();
                if current {
                    ui.paint(
                        Tone::Good,
                        &format!("installed in {name}, which {manager} runs"),
                    )
                } else {
                    ui.paint(
                        Tone::Warn,
                        &format!("installed in {name} ({manager} runs it), outdated (run dbguard install)"),
                    )
                }
            }
            HookState::StrandedInCopy { copy, manager } => {
                let name = copy.file_name().unwrap_or_default().to_string_lossy();
                ui.paint(
                    Tone::Warn,
                    &format!("missing: {manager} moved it to {name} and does not run it (run dbguard install)"),
                )
            }
            HookState::Foreign(reason) => ui.paint(Tone::Warn, &format!("cannot edit: {reason}")),
        };
        ui.out(&format!("  {hook:<22} {text}"));
    }
    if !findings.is_empty() {
        ui.warn(&hook_files::replaced::describe(
            &hooks_dir.git_dir,
            &findings,
        ));
    }
    Ok(())
}

fn show_fsmonitor(ui: &Ui, ctx: &Context) -> Result<(), CommandError> {
    let text = match fsmonitor_setting::setting(&ctx.repo.git).map_err(fsmonitor_error)? {
        fsmonitor_setting::Setting::Dbguard { value, chained } => {
            let installed = ui.paint(Tone::Good, &format!("installed ({value})"));
            match chained {
                Some(previous) => format!("{installed}, then runs {previous}"),
                None => installed,
            }
        }
        fsmonitor_setting::Setting::Unset => ui.paint(
            Tone::Warn,
            "not set: plain git commands are compared only after they ran (run dbguard install)",
        ),
        fsmonitor_setting::Setting::BuiltinDaemon => ui.paint(
            Tone::Warn,
            "true (git's built-in daemon): plain git commands are compared only after they ran",
        ),
        fsmonitor_setting::Setting::Other(value) => ui.paint(
            Tone::Warn,
            &format!("{value}, not dbguard's (run dbguard install: it keeps running behind it)"),
        ),
    };
    ui.out(&format!("  {:<22} {text}", "core.fsmonitor"));
    let watcher = match crate::fsmonitor::client::status(ctx.repo.git.path()) {
        crate::fsmonitor::client::Status::Running {
            pid,
            watches,
            resident_kib,
        } => ui.paint(
            Tone::Good,
            &format!(
                "running (pid {pid}): {watches} directories watched, {:.1} MiB resident",
                resident_kib as f64 / 1024.0
            ),
        ),
        crate::fsmonitor::client::Status::NotRunning { failed: Some(why) } => {
            ui.paint(Tone::Warn, &format!("not running: {why}"))
        }
        crate::fsmonitor::client::Status::NotRunning { failed: None } => {
            "not running (the next git command starts it)".to_string()
        }
    };
    ui.out(&format!("  {:<22} {watcher}", "file watcher"));
    Ok(())
}

pub(crate) fn uninstall(ui: &Ui, ctx: &Context, _args: &UninstallArgs) -> Result<(), CommandError> {
    ctx.require_repository("uninstall")?;
    let dir = hook_files::hooks_dir(&ctx.repo.worktree).map_err(hook_error)?;
    // Hooks installed before core.hooksPath moved elsewhere (husky does that) lie dormant
    // in .git/hooks and would come back when it is unset: remove those blocks as well.
    let mut dirs = vec![dir.path.clone()];
    let default_dir = dir.git_dir.join("hooks");
    if default_dir != dir.path {
        dirs.push(default_dir);
    }
    let mut changes = Vec::new();
    for dir in &dirs {
        changes.extend(hook_files::uninstall(dir).map_err(hook_error)?);
    }
    if let Err(e) = hook_files::replaced::forget(&dir.git_dir) {
        ui.warn(&format!(
            "could not remove {}: {e}",
            dir.git_dir
                .join(hook_files::replaced::RECORD_FILE)
                .display()
        ));
    }
    for change in changes {
        let what = match &change.outcome {
            Uninstall::Removed => "removed".to_string(),
            Uninstall::BlockRemoved => {
                "dbguard's block removed; the rest of the hook stays".to_string()
            }
            Uninstall::NotInstalled => continue,
            Uninstall::Skipped(reason) => format!("left alone: {reason}"),
        };
        ui.status(&format!(
            "{:<22} {what} ({})",
            change.hook,
            change.path.display()
        ));
    }
    // Before uninstall removes its directory (it would notice and leave, seconds later).
    if crate::fsmonitor::client::stop(ctx.repo.git.path()) {
        ui.status(&format!("{:<22} stopped", "file watcher"));
    }
    if fsmonitor_setting::uninstall(&ctx.repo.git).map_err(fsmonitor_error)? {
        ui.status(&format!("{:<22} put back as it was", "core.fsmonitor"));
    }
    say_what_stays(ui, ctx);
    Ok(())
}

/// What uninstall leaves, on purpose, and how to remove it: the snapshots (they may be
/// the only copy of a database) and dbguard's settings in git config (remotes, autopush).
fn say_what_stays(ui: &Ui, ctx: &Context) {
    let store = &ctx.settings.store.value;
    if store.exists() {
        ui.status(&format!(
            "left in place: the snapshots in {} (`dbguard restore` still reads them; delete that directory when you no longer need them)",
            store.display()
        ));
    }
    let sections = ctx
        .repo
        .query_git([
            "config",
            "--local",
            "--name-only",
            "--get-regexp",
            r"^dbguard\.",
        ])
        .map(|out| dbguard_sections(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default();
    if !sections.is_empty() {
        let commands: Vec<String> = sections
            .iter()
            .map(|section| format!("git config --remove-section {section}"))
            .collect();
        ui.status(&format!(
            "left in place: dbguard's settings in .git/config (remotes, autopush, …); to remove them: {}",
            commands.join("; ")
        ));
    }
}

/// The config sections of `dbguard.*` keys (`dbguard`, `dbguard.remote.lab`), in order.
fn dbguard_sections(names: &str) -> Vec<String> {
    let mut sections: Vec<String> = Vec::new();
    for name in names.lines() {
        let Some((section, _key)) = name.trim().rsplit_once('.') else {
            continue;
        };
        if !sections.iter().any(|s| s == section) {
            sections.push(section.to_string());
        }
    }
    sections
}

/// Whether a `.gitignore` of the working tree already ignores `path` (an equivalent line
/// such as `posts.db` or `*.db`, in any `.gitignore` of the tree), as git itself decides.
/// `.git/info/exclude` and the user's global excludes do not count: collaborators do not
/// share them, so the path still goes into `.gitignore`.
fn ignored_by_a_gitignore(ctx: &Context, path: &str) -> Result<bool, CommandError> {
    let output = ctx
        .repo
        .query_git(["check-ignore", "-v", "--no-index", "--", path])?;
    // Exit 1: not ignored. -v also reports a matching `!pattern`, which un-ignores.
    if !output.status.success() {
        return Ok(false);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().next().is_some_and(gitignore_ignores))
}

/// Whether a `git check-ignore -v` line (`<source>:<line>:<pattern>\t<path>`) says that
/// a `.gitignore` of the working tree ignores the path: the source is a `.gitignore`
/// given relative to the tree (not `.git/info/exclude`, not a global file, which git
/// names by an absolute path) and the pattern is no `!` negation.
fn gitignore_ignores(line: &str) -> bool {
    let Some((matched, _path)) = line.split_once('\t') else {
        return false;
    };
    let Some(end) = matched
        .match_indices(".gitignore:")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || matched[..i].ends_with('/'))
    else {
        return false;
    };
    let source = &matched[..end + ".gitignore".len()];
    let pattern = matched[end + ".gitignore:".len()..]
        .split_once(':')
        .map_or("", |(_, pattern)| pattern);
    !source.starts_with('/')
        && !source.starts_with('"')
        && !source.starts_with(".git/")
        && !pattern.is_empty()
        && !pattern.starts_with('!')
}

/// The `.gitignore` line that matches `path` (worktree-relative) and nothing else: anchored
/// at the top of the tree, glob characters (`*`, `?`, `[`) and backslashes escaped, and
/// trailing spaces escaped (git drops unescaped ones). `/crawl[1].db` would ignore
/// `crawl1.db`, not `crawl[1].db`.
fn gitignore_entry(path: &str) -> String {
    let kept = path.trim_end_matches(' ');
    let mut entry = String::with_capacity(path.len() + 8);
    entry.push('/');
    for c in kept.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            entry.push('\\');
        }
        entry.push(c);
    }
    for _ in kept.len()..path.len() {
        entry.push_str("\\ ");
    }
    entry
}

pub(crate) fn untrack(ui: &Ui, ctx: &Context, args: &UntrackArgs) -> Result<(), CommandError> {
    ctx.require_repository("untrack")?;
    let found = ctx.scanner().explicit(&ctx.cwd, &args.path)?;
    let Some(database) = found.into_iter().next() else {
        return Err(CommandError::new(format!(
            "{} holds no database",
            args.path.display()
        )));
    };
    if !database.git.under_version_control() {
        return Err(
            CommandError::new(format!("{} is not tracked by git", database.path))
                .hint("nothing to untrack; `dbguard status` shows each database's git state"),
        );
    }
    {
        let mut store = ctx.store()?;
        for (_, outcome) in snapshot_operation(
            ui,
            ctx,
            &mut store,
            ("untrack", &command_line()),
            std::slice::from_ref(&database),
            Some("before untrack"),
            Lines::Every,
            &as_before,
        )? {
            outcome?;
        }
    }
    let output = ctx
        .repo
        .query_git(["rm", "--cached", "--quiet", "--", database.path.as_str()])?;
    if !output.status.success() {
        return Err(
            CommandError::new(format!("git rm --cached {} failed", database.path))
                .cause(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        );
    }
    let gitignore = ctx.repo.worktree.join(".gitignore");
    let entry = gitignore_entry(database.path.as_str());
    let existing = fs::read_to_string(&gitignore).unwrap_or_default();
    let already_ignored = existing.lines().any(|line| line.trim() == entry)
        || ignored_by_a_gitignore(ctx, database.path.as_str())?;
    if !already_ignored {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&gitignore)
            .map_err(|e| CommandError::with_source("cannot update .gitignore", e))?;
        let separator = if existing.is_empty() || existing.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        writeln!(file, "{separator}{entry}")
            .map_err(|e| CommandError::with_source("cannot update .gitignore", e))?;
    }
    let staged = ctx.repo.query_git(["add", "--", ".gitignore"])?;
    if !staged.status.success() {
        ui.warn("could not stage .gitignore; add it yourself");
    }
    // Said only when git agrees: a later `!` line, or a name no pattern can spell,
    // leaves the file unignored whatever was written.
    if ignored_by_a_gitignore(ctx, database.path.as_str())? {
        ui.status(&format!(
            "{} is no longer tracked and is in .gitignore; commit the change:",
            database.path
        ));
    } else {
        ui.warn(&format!(
            "{} is no longer tracked, but git does not ignore it (`git check-ignore -v -- {}` \
             says why): `git add -A` would track it again",
            database.path,
            shell_quote(database.path.as_str())
        ));
        ui.status("commit the change:");
    }
    ui.status(&format!(
        "  git commit -m 'Stop tracking {}'",
        database.path
    ));
    ui.warn("when collaborators pull that commit, git deletes their copy of the file");
    ui.hint("ask them to pull with `dbguard pull` (it snapshots first), or to copy the file aside before pulling");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_removed_section_by_section() {
        let names = "dbguard.precommit\ndbguard.remote.lab.url\ndbguard.remote.lab.endpoint\ndbguard.remote.nas.url\n";
        assert_eq!(
            dbguard_sections(names),
            vec!["dbguard", "dbguard.remote.lab", "dbguard.remote.nas"]
        );
    }

    #[test]
    fn check_ignore_lines_count_only_a_gitignore_of_the_tree() {
        assert!(gitignore_ignores(".gitignore:1:posts.db\tposts.db"));
        assert!(gitignore_ignores("data/.gitignore:3:*.db\tdata/a.db"));
        assert!(gitignore_ignores(".gitignore:2:a:b.db\ta:b.db"));
        // A negation un-ignores; exclude files and global excludes are not shared.
        assert!(!gitignore_ignores(".gitignore:2:!posts.db\tposts.db"));
        assert!(!gitignore_ignores(".git/info/exclude:1:posts.db\tposts.db"));
        assert!(!gitignore_ignores("/home/u/.gitignore:1:*.db\tposts.db"));
        assert!(!gitignore_ignores(
            "/home/u/.config/git/ignore:1:*.db\tposts.db"
        ));
        assert!(!gitignore_ignores("my.gitignore:1:x\tx"));
        assert!(!gitignore_ignores(""));
    }

    #[test]
    fn gitignore_entries_escape_what_git_would_read_as_a_pattern() {
        assert_eq!(gitignore_entry("posts.db"), "/posts.db");
        assert_eq!(gitignore_entry("crawl[1].db"), "/crawl\\[1].db");
        assert_eq!(gitignore_entry("a*b?.db"), "/a\\*b\\?.db");
        assert_eq!(gitignore_entry("back\\slash.db"), "/back\\\\slash.db");
        assert_eq!(gitignore_entry("#x!.db"), "/#x!.db");
        assert_eq!(gitignore_entry("trailing  "), "/trailing\\ \\ ");
    }
}
