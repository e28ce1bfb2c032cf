//! Git hook shims: install, uninstall and inspect dbguard's marker block in hook files.
//!
//! dbguard's lines live in a block between [`BEGIN_MARKER`] and [`END_MARKER`] inside the
//! hook file. Everything else in the file is left byte for byte as it was.
//!
//! # Where the block goes
//!
//! * New hook file: `#!/bin/sh`, then the block with a [`CREATED_MARKER`] line, so that
//!   uninstall deletes the file again when nothing else was added to it.
//! * Existing shell hook: **right after the shebang line** (at the very top when there is
//!   no shebang: git runs such a file with `sh`). Hooks written by other tools often end
//!   in `exec …` (pre-commit), `exit $c` (husky) or a call whose status is the hook's
//!   (lefthook, git-lfs), so an appended block could be skipped; at the top it always
//!   runs, and as it never `exit`s, never fails and never changes `$?` seen at the end,
//!   the rest of the file runs as before and still decides the hook's exit status.
//! * Re-install replaces an existing block in place (never a second block).
//! * Hooks that are not shell scripts (`#!/usr/bin/env python3`, binaries), symlinks and
//!   non-files are never edited: install reports [`Install::Skipped`] with the reason and
//!   the line for the user to add by hand.
//! * The block always uses `\n` line ends, even in a CRLF file: the shell must parse it.
//!   Removal restores the original bytes exactly.
//!
//! # stdin
//!
//! Only `post-rewrite` and `reference-transaction` get data on stdin. Their blocks read
//! it once into a shell variable, give dbguard a copy through a here-document, then
//! `exec 0<<…` the same text as the script's stdin, so whatever follows the block in
//! the same file reads the complete stdin from the start. No temp files. Reading drops
//! trailing newlines and the here-document adds one back: exact for git's input
//! (LF-terminated lines; a missing final newline would gain one). The other blocks run
//! dbguard with `</dev/null` and never touch the hook's stdin.
//!
//! # Staying fast when no database is involved
//!
//! Every hook is a `/bin/sh` start (git runs reference-transaction several times per
//! commit), so the blocks decide in `sh` builtins whether dbguard must start at all:
//!
//! * `reference-transaction` does nothing in any state but `prepared`; in `prepared` it
//!   reads stdin with `read` and starts dbguard only when a `refs/remotes/*`,
//!   `ORIG_HEAD` or `refs/stash` line is on it.
//! * The post-* blocks start with `hooks/fast-path.sh`: it reads the [`watch`] file
//!   and starts dbguard only when a database dbguard compares (or its WAL, the
//!   catalog, or the git config) changed since dbguard last looked, or is missing.
//! * `reference-transaction` and `pre-rebase` are installed only while dbguard's
//!   `core.fsmonitor` hook is off ([`FALLBACK_HOOKS`]): with it, they would do nothing
//!   but cost a `sh` start per ref update.
//!
//! This module never prints; errors carry the paths involved.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::git::GitRunner;

/// The hooks dbguard installs, in a stable order.
pub(crate) const HOOK_NAMES: &[&str] = &[
    "post-checkout",
    "post-merge",
    "post-rewrite",
    "pre-commit",
    "pre-rebase",
    "reference-transaction",
];

/// The hooks whose only job is a snapshot before git writes, for when dbguard's
/// `core.fsmonitor` hook is off: `pre-rebase`, and `reference-transaction` in state
/// `prepared`. With the fsmonitor hook configured they return at once
/// (`flow::hook_actions::before`), and yet cost a `/bin/sh` start each: git runs
/// reference-transaction 8 times per branch checkout and about 5 times per commit, ~1 ms
/// each, more than the whole budget of issue 28. So `dbguard install` puts them in only
/// when it did not set `core.fsmonitor` (`--no-fsmonitor`, git's own daemon kept, no
/// `dbguard-fsmonitor` next to dbguard), removes its block from them when it did, and a
/// post-* hook puts them back when `core.fsmonitor` stops naming dbguard's program
/// (`flow::hook_actions::keep_the_guard`).
pub(crate) const FALLBACK_HOOKS: &[&str] = &["pre-rebase", "reference-transaction"];

/// The hooks installed whatever `core.fsmonitor` is: the comparisons after a checkout,
/// merge or rewrite, and the commit check.
pub(crate) const ALWAYS_HOOKS: &[&str] =
    &["post-checkout", "post-merge", "post-rewrite", "pre-commit"];

/// A copy other hook managers keep of a hook file they take over.
struct SideCopy {
    suffix: &'static str,
    manager: &'static str,
    /// A line in the manager's hook that shows it runs the copy; `None`: never run.
    runner_signature: Option<&'static str>,
}

/// pre-commit's migration mode renames an existing hook to `<hook>.legacy` and runs it
/// before its own checks; lefthook renames it to `<hook>.old`, does not run it, and
/// puts it back on `lefthook uninstall`.
const SIDE_COPIES: &[SideCopy] = &[
    SideCopy {
        suffix: ".legacy",
        manager: "pre-commit",
        runner_signature: Some("# File generated by pre-commit: https://pre-commit.com"),
    },
    SideCopy {
        suffix: ".old",
        manager: "lefthook",
        runner_signature: None,
    },
];

/// A side copy of a hook that holds dbguard's block.
struct CopyWithBlock {
    kind: &'static SideCopy,
    path: PathBuf,
    text: String,
    /// The hook file itself runs this copy (pre-commit's migration mode).
    run_by_hook: bool,
}

fn side_copy_path(hook_path: &Path, copy: &SideCopy) -> PathBuf {
    PathBuf::from(format!("{}{}", hook_path.display(), copy.suffix))
}

/// The side copy of the hook at `path` (whose text is `main_text`) that holds dbguard's
/// block, if any.
fn copy_with_block(path: &Path, main_text: &str) -> Option<CopyWithBlock> {
    SIDE_COPIES.iter().find_map(|kind| {
        let copy_path = side_copy_path(path, kind);
        let text = fs::read_to_string(&copy_path).ok()?;
        if !matches!(find_block(&text), Ok(Some(_))) {
            return None;
        }
        let run_by_hook = kind
            .runner_signature
            .is_some_and(|signature| main_text.lines().any(|line| line == signature));
        Some(CopyWithBlock {
            kind,
            path: copy_path,
            text,
            run_by_hook,
        })
    })
}

/// First line of dbguard's block.
pub(crate) const BEGIN_MARKER: &str = "# >>> dbguard >>>";
/// Last line of dbguard's block.
pub(crate) const END_MARKER: &str = "# <<< dbguard <<<";
/// Line inside the block when dbguard created the hook file.
pub(crate) const CREATED_MARKER: &str = "# dbguard-created";

const NEW_FILE_SHEBANG: &str = "#!/bin/sh\n";

/// The line in a shim that stands for `hooks/fast-path.sh`.
const FAST_PATH_PLACEHOLDER: &str = "# @fast-path@ (hooks/fast-path.sh is inserted here)\n";

/// The shim block (markers included) for `hook`: `hooks/<hook>` with the fast-path
/// check (shared by the post-* shims) put in place of its placeholder line.
pub(crate) fn shim(hook: &str) -> Option<String> {
    let template = match hook {
        "post-checkout" => include_str!("../hooks/post-checkout"),
        "post-merge" => include_str!("../hooks/post-merge"),
        "post-rewrite" => include_str!("../hooks/post-rewrite"),
        "pre-commit" => include_str!("../hooks/pre-commit"),
        "pre-rebase" => include_str!("../hooks/pre-rebase"),
        "reference-transaction" => include_str!("../hooks/reference-transaction"),
        _ => return None,
    };
    Some(template.replace(FAST_PATH_PLACEHOLDER, include_str!("../hooks/fast-path.sh")))
}

/// The line a user can add to a hook dbguard will not edit.
pub(crate) fn manual_line(hook: &str) -> String {
    let line = format!("command -v dbguard >/dev/null 2>&1 && dbguard hook {hook} \"$@\" || true");
    if matches!(hook, "post-rewrite" | "reference-transaction") {
        format!("{line}  # feed it the stdin git gave this hook")
    } else {
        line
    }
}

/// Errors of the file-system and git parts of this module.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    #[error("could not run `git rev-parse` in {dir}")]
    GitSpawn {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`git rev-parse --git-path hooks` failed in {dir}: {stderr}")]
    GitFailed { dir: PathBuf, stderr: String },
    #[error("could not create the hooks directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not read the hook {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write the hook {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not remove the hook {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a hook file's text cannot take (or give up) dbguard's block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("dbguard has no hook named {0:?}")]
    UnknownHook(String),
    #[error("the hook is run by {interpreter:?}, not by a POSIX shell")]
    NotShell { interpreter: String },
    #[error("the hook is a binary file")]
    Binary,
    #[error("dbguard's block in the hook is damaged: {0}")]
    Malformed(&'static str),
}

/// Why install/uninstall left a hook file alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SkipReason {
    #[error("the hook is run by {interpreter:?}, not by a POSIX shell")]
    NotShell { interpreter: String },
    #[error("the hook is a binary file")]
    Binary,
    #[error("the hook is a symbolic link to {target}; dbguard does not edit files through links")]
    Symlink { target: PathBuf },
    #[error("the hook path is not a regular file")]
    NotAFile,
    #[error("dbguard's block in the hook is damaged: {0}")]
    MalformedBlock(&'static str),
}

impl SkipReason {
    fn from_block(e: BlockError) -> Self {
        match e {
            BlockError::NotShell { interpreter } => SkipReason::NotShell { interpreter },
            BlockError::Binary => SkipReason::Binary,
            BlockError::Malformed(m) => SkipReason::MalformedBlock(m),
            BlockError::UnknownHook(_) => unreachable!("only known hooks are installed"),
        }
    }
}

/// Where hooks live for a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HooksDir {
    /// Absolute; may not exist yet ([`install`] creates it).
    pub(crate) path: PathBuf,
    /// The git common dir (`.git` of the main worktree), absolute.
    pub(crate) git_dir: PathBuf,
    /// `core.hooksPath` points outside the git dir (e.g. a tracked `.husky/_`, a shared
    /// directory): other tools or other repositories may rewrite or share these files.
    pub(crate) outside_git_dir: bool,
}

/// What [`install`] did to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Install {
    /// No hook file existed; dbguard created one (mode 0755).
    Created,
    /// The block was there with older text and was replaced in place.
    Updated,
    /// The block was added to someone else's hook file.
    AddedToExisting,
    /// The block was there and current.
    Unchanged,
    /// The block lives in a copy of the hook that another manager runs (pre-commit's
    /// `<hook>.legacy`); it was brought up to date there and the manager's file was left
    /// alone.
    KeptInCopy {
        copy: PathBuf,
        manager: &'static str,
    },
    /// The file was left alone; `add_yourself` is the line the user can add by hand.
    Skipped {
        reason: SkipReason,
        add_yourself: String,
    },
}

/// What [`uninstall`] did to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Uninstall {
    /// dbguard had created the file and nothing else was in it: deleted.
    Removed,
    /// The block was removed; the rest of the file is as it was.
    BlockRemoved,
    /// No dbguard block in this hook (or no hook file).
    NotInstalled,
    /// A block may be there but dbguard does not edit this file.
    Skipped(SkipReason),
}

/// One hook's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookChange<T> {
    pub(crate) hook: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) outcome: T,
}

/// A hook's state as [`status`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookState {
    /// The block is there. `current`: its text is this version's shim.
    /// `executable`: git will run the file (git ignores hooks without the x bit).
    Installed { current: bool, executable: bool },
    /// No block: `install` would create the file or add the block to it.
    Missing { file_exists: bool },
    /// The block is in a copy of the hook that `manager` runs from its own hook
    /// (pre-commit's `<hook>.legacy`).
    InstalledInCopy {
        copy: PathBuf,
        manager: &'static str,
        current: bool,
    },
    /// The block is only in a copy `manager` made of the hook and does not run
    /// (lefthook's `<hook>.old`): git no longer runs it.
    StrandedInCopy {
        copy: PathBuf,
        manager: &'static str,
    },
    /// A hook file dbguard will not edit.
    Foreign(SkipReason),
}

// ---------------------------------------------------------------------------------------
// Pure text handling
// ---------------------------------------------------------------------------------------

/// Byte span of the block in a hook's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    /// Exclusive; includes the end marker's line terminator when it has one.
    end: usize,
    created: bool,
    /// The end marker line ends with a line terminator.
    terminated: bool,
}

fn is_line(line: &str, marker: &str) -> bool {
    line.trim() == marker
}

fn find_block(text: &str) -> Result<Option<Span>, BlockError> {
    let mut offset = 0;
    let mut begin: Option<usize> = None;
    let mut created = false;
    let mut found: Option<Span> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if is_line(line, BEGIN_MARKER) {
            if begin.is_some() {
                return Err(BlockError::Malformed("a begin marker inside the block"));
            }
            if found.is_some() {
                return Err(BlockError::Malformed("more than one dbguard block"));
            }
            begin = Some(start);
            created = false;
        } else if is_line(line, END_MARKER) {
            let Some(b) = begin.take() else {
                return Err(BlockError::Malformed(
                    "an end marker without a begin marker",
                ));
            };
            found = Some(Span {
                start: b,
                end: offset,
                created,
                terminated: line.ends_with('\n'),
            });
        } else if begin.is_some() && is_line(line, CREATED_MARKER) {
            created = true;
        }
    }
    if begin.is_some() {
        return Err(BlockError::Malformed(
            "a begin marker without an end marker",
        ));
    }
    Ok(found)
}

/// The block text for `hook`; with the created marker after the begin line if `created`.
fn render(shim: &str, created: bool) -> String {
    if !created {
        return shim.to_string();
    }
    let (first, rest) = shim.split_at(shim.find('\n').map_or(shim.len(), |i| i + 1));
    format!("{first}{CREATED_MARKER}\n{rest}")
}

/// The block's text normalized for comparison with a shim: `\n` line ends, no created
/// marker, trailing newline.
fn normalized_block(block: &str) -> String {
    let mut out = String::with_capacity(block.len());
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if is_line(line, CREATED_MARKER) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The interpreter a shebang line names, e.g. `bash` for `#!/usr/bin/env -S bash -e`.
fn shebang_interpreter(first_line: &str) -> String {
    let line = first_line.trim_start_matches("#!").trim();
    let mut words = line.split_whitespace();
    let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
    let Some(program) = words.next() else {
        return String::new();
    };
    let program = base(program);
    if program == "env" || program == "busybox" {
        // Skip env's options and VAR=value assignments.
        if let Some(next) = words.find(|w| !w.starts_with('-') && !w.contains('=')) {
            return base(next);
        }
    }
    program
}

fn is_posix_shell(interpreter: &str) -> bool {
    matches!(
        interpreter,
        "sh" | "bash" | "dash" | "ash" | "ksh" | "mksh" | "pdksh" | "zsh" | "yash" | "posh"
    )
}

/// Checks that dbguard may edit a hook with this text (a shell script or no shebang).
fn check_editable(text: &str) -> Result<(), BlockError> {
    if text.contains('\0') {
        return Err(BlockError::Binary);
    }
    let first = text.split_inclusive('\n').next().unwrap_or("");
    if first.starts_with("#!") {
        let interpreter = shebang_interpreter(first.trim_end());
        if !is_posix_shell(&interpreter) {
            return Err(BlockError::NotShell { interpreter });
        }
    }
    Ok(())
}

/// Returns the hook text with dbguard's current block for `hook`: a new file's text for
/// `None`; otherwise `existing` with the block replaced in place, or inserted after the
/// shebang line (at the top without one). Every other byte is kept.
pub(crate) fn insert_block(existing: Option<&str>, hook: &str) -> Result<String, BlockError> {
    let shim = &shim(hook).ok_or_else(|| BlockError::UnknownHook(hook.to_string()))?;
    let Some(text) = existing else {
        return Ok(format!("{NEW_FILE_SHEBANG}{}", render(shim, true)));
    };
    check_editable(text)?;
    if let Some(span) = find_block(text)? {
        let mut block = render(shim, span.created);
        if !span.terminated {
            block.pop();
        }
        return Ok(format!(
            "{}{block}{}",
            &text[..span.start],
            &text[span.end..]
        ));
    }
    let block = render(shim, false);
    if !text.starts_with("#!") {
        return Ok(format!("{block}{text}"));
    }
    match text.find('\n') {
        Some(i) => Ok(format!("{}{block}{}", &text[..=i], &text[i + 1..])),
        // Only a shebang line without a newline: add one, and leave the block without its
        // final newline so that removing it restores the exact bytes (see remove_block).
        None => Ok(format!("{text}\n{}", block.trim_end_matches('\n'))),
    }
}

/// Removes dbguard's block. `Ok(Some(text))`: the hook's new text (unchanged when there is
/// no block). `Ok(None)`: dbguard created the file and only a shebang/whitespace is left,
/// so the file should be deleted.
pub(crate) fn remove_block(text: &str) -> Result<Option<String>, BlockError> {
    let Some(span) = find_block(text)? else {
        return Ok(Some(text.to_string()));
    };
    let mut start = span.start;
    if !span.terminated && start > 0 && text[..start].ends_with('\n') {
        // The block was put after a final line without a newline: drop the one added.
        start -= 1;
    }
    let rest = format!("{}{}", &text[..start], &text[span.end..]);
    if span.created {
        let mut lines = rest.lines().map(str::trim).filter(|l| !l.is_empty());
        let only_shebang = match (lines.next(), lines.next()) {
            (None, _) => true,
            (Some(first), None) => first.starts_with("#!"),
            _ => false,
        };
        if only_shebang {
            return Ok(None);
        }
    }
    Ok(Some(rest))
}

/// The state of the hook whose text is `text` (pure part of [`status`]).
fn state_of_text(text: &str, hook: &str, executable: bool) -> HookState {
    if text.contains('\0') {
        return HookState::Foreign(SkipReason::Binary);
    }
    match find_block(text) {
        Ok(Some(span)) => {
            let current =
                shim(hook).is_some_and(|s| normalized_block(&text[span.start..span.end]) == s);
            HookState::Installed {
                current,
                executable,
            }
        }
        Ok(None) => match check_editable(text) {
            Ok(()) => HookState::Missing { file_exists: true },
            Err(e) => HookState::Foreign(SkipReason::from_block(e)),
        },
        Err(e) => HookState::Foreign(SkipReason::from_block(e)),
    }
}

// ---------------------------------------------------------------------------------------
// Files and git
// ---------------------------------------------------------------------------------------

/// Resolves the hooks directory with `git rev-parse --git-path hooks` run in `repo_dir`
/// (honours `core.hooksPath` and linked worktrees).
pub(crate) fn hooks_dir(repo_dir: &Path) -> Result<HooksDir, HookError> {
    hooks_dir_with(repo_dir, GitRunner::default().query(repo_dir))
}

fn hooks_dir_with(repo_dir: &Path, mut git: Command) -> Result<HooksDir, HookError> {
    let output = git
        .args([
            "rev-parse",
            "--path-format=absolute",
            "--git-common-dir",
            "--git-path",
            "hooks",
        ])
        .current_dir(repo_dir)
        .output()
        .map_err(|source| HookError::GitSpawn {
            dir: repo_dir.to_path_buf(),
            source,
        })?;
    let failed = |stderr: String| HookError::GitFailed {
        dir: repo_dir.to_path_buf(),
        stderr,
    };
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Take the last two lines: a git older than 2.31 echoes `--path-format=absolute`.
    let lines: Vec<&str> = stdout.lines().collect();
    let [.., common, hooks] = lines[..] else {
        return Err(failed(format!("unexpected output {stdout:?}")));
    };
    let git_dir = canonical(&repo_dir.join(common));
    let path = canonical(&repo_dir.join(hooks));
    Ok(HooksDir {
        outside_git_dir: !path.starts_with(&git_dir),
        path,
        git_dir,
    })
}

/// Canonicalizes the longest existing ancestor and appends the rest.
fn canonical(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return rest.iter().rev().fold(c, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// What is at a hook path.
enum Found {
    Nothing,
    Symlink(PathBuf),
    NotAFile,
    /// A regular file: its bytes and permission bits.
    File(Vec<u8>, u32),
}

fn inspect(path: &Path) -> Result<Found, HookError> {
    let read_err = |source| HookError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(read_err(e)),
    };
    if meta.file_type().is_symlink() {
        return Ok(Found::Symlink(fs::read_link(path).map_err(read_err)?));
    }
    if !meta.is_file() {
        return Ok(Found::NotAFile);
    }
    let bytes = fs::read(path).map_err(read_err)?;
    Ok(Found::File(bytes, mode_of(&meta)))
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(_meta: &fs::Metadata) -> u32 {
    0o755
}

/// Writes `text` to `path` atomically (temp file in the same directory, then rename),
/// with permission bits `mode`.
fn write_hook(path: &Path, text: &str, mode: u32) -> Result<(), HookError> {
    let err = |source| HookError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".dbguard-hook-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

fn hook_path(hooks_dir: &Path, hook: &'static str) -> PathBuf {
    hooks_dir.join(hook)
}

/// Installs (or updates) dbguard's block in each of `hooks` (names of [`HOOK_NAMES`]),
/// creating `hooks_dir` if needed. Files dbguard will not edit are reported as skipped.
pub(crate) fn install(
    hooks_dir: &Path,
    hooks: &[&'static str],
) -> Result<Vec<HookChange<Install>>, HookError> {
    fs::create_dir_all(hooks_dir).map_err(|source| HookError::CreateDir {
        path: hooks_dir.to_path_buf(),
        source,
    })?;
    let mut changes = Vec::new();
    for &hook in hooks {
        let path = hook_path(hooks_dir, hook);
        let skip = |reason| Install::Skipped {
            reason,
            add_yourself: manual_line(hook),
        };
        let outcome = match inspect(&path)? {
            // Every name in HOOK_NAMES has a shim, so a new file always gets one.
            Found::Nothing => match insert_block(None, hook) {
                Ok(text) => {
                    write_hook(&path, &text, 0o755)?;
                    Install::Created
                }
                Err(_) => continue,
            },
            Found::Symlink(target) => skip(SkipReason::Symlink { target }),
            Found::NotAFile => skip(SkipReason::NotAFile),
            Found::File(bytes, mode) => match String::from_utf8(bytes) {
                Err(_) => skip(SkipReason::Binary),
                // Another manager took the file over and runs our block from its copy:
                // keep it there (a second block in its file would run dbguard twice).
                Ok(old)
                    if !matches!(find_block(&old), Ok(Some(_)))
                        && let Some(copy) =
                            copy_with_block(&path, &old).filter(|c| c.run_by_hook) =>
                {
                    if let Ok(updated) = insert_block(Some(&copy.text), hook)
                        && updated != copy.text
                    {
                        let copy_mode = fs::metadata(&copy.path).map_or(0o755, |m| mode_of(&m));
                        write_hook(&copy.path, &updated, copy_mode)?;
                    }
                    Install::KeptInCopy {
                        copy: copy.path,
                        manager: copy.kind.manager,
                    }
                }
                Ok(old) => match insert_block(Some(&old), hook) {
                    Err(e) => skip(SkipReason::from_block(e)),
                    Ok(new) if new == old => Install::Unchanged,
                    Ok(new) => {
                        let had_block = matches!(find_block(&old), Ok(Some(_)));
                        write_hook(&path, &new, mode)?;
                        if had_block {
                            Install::Updated
                        } else {
                            Install::AddedToExisting
                        }
                    }
                },
            },
        };
        changes.push(HookChange {
            hook,
            path,
            outcome,
        });
    }
    Ok(changes)
}

/// Removes dbguard's block from every hook of [`HOOK_NAMES`]; deletes files dbguard
/// created when nothing else is left in them.
pub(crate) fn uninstall(hooks_dir: &Path) -> Result<Vec<HookChange<Uninstall>>, HookError> {
    remove(hooks_dir, HOOK_NAMES)
}

/// Removes dbguard's block from each of `hooks` (and from the copies other managers
/// made of them), as [`uninstall`] does for all of them.
pub(crate) fn remove(
    hooks_dir: &Path,
    hooks: &[&'static str],
) -> Result<Vec<HookChange<Uninstall>>, HookError> {
    let mut changes = Vec::new();
    for &hook in hooks {
        let path = hook_path(hooks_dir, hook);
        let outcome = match inspect(&path)? {
            Found::Nothing | Found::NotAFile => Uninstall::NotInstalled,
            Found::Symlink(target) => {
                let has_block = fs::read_to_string(&path)
                    .ok()
                    .is_some_and(|t| matches!(find_block(&t), Ok(Some(_)) | Err(_)));
                if has_block {
                    Uninstall::Skipped(SkipReason::Symlink { target })
                } else {
                    Uninstall::NotInstalled
                }
            }
            Found::File(bytes, mode) => match String::from_utf8(bytes) {
                Err(_) => Uninstall::NotInstalled,
                Ok(old) => remove_block_from_file(&path, &old, mode)?,
            },
        };
        changes.push(HookChange {
            hook,
            path: path.clone(),
            outcome,
        });
        // Copies other managers made of our hook (and may run, or put back later).
        for kind in SIDE_COPIES {
            let copy_path = side_copy_path(&path, kind);
            if let Found::File(bytes, mode) = inspect(&copy_path)?
                && let Ok(old) = String::from_utf8(bytes)
                && let Ok(Some(_)) = find_block(&old)
            {
                let outcome = remove_block_from_file(&copy_path, &old, mode)?;
                changes.push(HookChange {
                    hook,
                    path: copy_path,
                    outcome,
                });
            }
        }
    }
    Ok(changes)
}

/// Remove dbguard's block from the hook file at `path` whose text is `old`: rewrite it,
/// or delete it when dbguard created it and nothing else is left.
fn remove_block_from_file(path: &Path, old: &str, mode: u32) -> Result<Uninstall, HookError> {
    Ok(match remove_block(old) {
        Err(e) => Uninstall::Skipped(SkipReason::from_block(e)),
        Ok(None) => {
            fs::remove_file(path).map_err(|source| HookError::Remove {
                path: path.to_path_buf(),
                source,
            })?;
            Uninstall::Removed
        }
        Ok(Some(new)) if new == old => Uninstall::NotInstalled,
        Ok(Some(new)) => {
            write_hook(path, &new, mode)?;
            Uninstall::BlockRemoved
        }
    })
}

/// The state of every hook of [`HOOK_NAMES`] in `hooks_dir` (which need not exist).
pub(crate) fn status(hooks_dir: &Path) -> Result<Vec<(String, HookState)>, HookError> {
    let mut states = Vec::new();
    for &hook in HOOK_NAMES {
        let path = hook_path(hooks_dir, hook);
        let state = match inspect(&path)? {
            Found::Nothing => HookState::Missing { file_exists: false },
            Found::NotAFile => HookState::Foreign(SkipReason::NotAFile),
            Found::Symlink(target) => {
                // Report what git would run; dbguard still won't edit it.
                let through = fs::read_to_string(&path)
                    .ok()
                    .map(|t| state_of_text(&t, hook, is_executable(&path)));
                match through {
                    Some(s @ HookState::Installed { .. }) => s,
                    _ => HookState::Foreign(SkipReason::Symlink { target }),
                }
            }
            Found::File(bytes, mode) => match String::from_utf8(bytes) {
                Err(_) => HookState::Foreign(SkipReason::Binary),
                Ok(text) => match state_of_text(&text, hook, mode & 0o111 != 0) {
                    HookState::Missing { .. } | HookState::Foreign(_)
                        if let Some(copy) = copy_with_block(&path, &text) =>
                    {
                        if copy.run_by_hook {
                            let current = matches!(
                                state_of_text(&copy.text, hook, true),
                                HookState::Installed { current: true, .. }
                            );
                            HookState::InstalledInCopy {
                                copy: copy.path,
                                manager: copy.kind.manager,
                                current,
                            }
                        } else {
                            HookState::StrandedInCopy {
                                copy: copy.path,
                                manager: copy.kind.manager,
                            }
                        }
                    }
                    state => state,
                },
            },
        };
        states.push((hook.to_string(), state));
    }
    Ok(states)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| mode_of(&m) & 0o111 != 0)
}

/// The files that hold dbguard's block after [`install`] made `changes`: what
/// [`replaced::record`] lists.
pub(crate) fn block_files(changes: &[HookChange<Install>]) -> Vec<PathBuf> {
    changes
        .iter()
        .filter_map(|change| match &change.outcome {
            Install::Skipped { .. } => None,
            Install::KeptInCopy { copy, .. } => Some(copy.clone()),
            _ => Some(change.path.clone()),
        })
        .collect()
}

pub(crate) mod fsmonitor_setting;
// In `fsmonitor` (std only): the `dbguard-fsmonitor` program tells about replaced blocks.
pub(crate) use crate::fsmonitor::replaced;
#[cfg(test)]
mod tests;
pub(crate) mod watch;
