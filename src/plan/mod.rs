//! Planning: turn a git argv into an [`Operation`] and compute which database files git is about to overwrite or delete.
//!
//! Everything here asks the real `git` binary (never libgit2: its checkout dry run fires no
//! notifications). The planner never prints and never changes the repository: it only runs
//! read-only queries (`rev-parse`, `diff-tree`, `status`, `ls-files`, `merge-tree --write-tree`
//! which writes only unreachable objects, `clean -n`).
//!
//! Fail safe: when a risky command cannot be planned (unknown option, unresolvable revision, a
//! shell alias, git failing), [`plan`] returns every database as at risk with
//! [`Plan::fallback_reason`] saying why. Only truly invalid input is an `Err`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Errors from planning. Most planning failures become a fallback [`Plan`] instead.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The git binary could not be started.
    #[error("could not run git in {dir}")]
    Spawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A git query exited unsuccessfully.
    #[error("`git {args}` failed in {dir} (exit {code:?}): {stderr}")]
    Git {
        args: String,
        dir: PathBuf,
        code: Option<i32>,
        stderr: String,
    },
    /// The argv is not something git itself would accept.
    #[error("invalid git command line: {0}")]
    InvalidArgs(String),
    /// Aliases expand into each other forever (git refuses these too).
    #[error("alias loop: {0}")]
    AliasLoop(String),
    /// A database path handed to the planner is not worktree-relative.
    #[error("not a worktree-relative path: {0}")]
    InvalidPath(PathBuf),
    /// The command is understood but cannot be planned (becomes a fallback plan).
    #[error("{0}")]
    Unplannable(String),
}

/// A parsed `git …` command line (argv without the leading `git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInvocation {
    /// Global options before the subcommand, in order (`-C x`, `-c k=v`, `--git-dir=…`, …),
    /// including those contributed by alias expansion.
    pub global: Vec<OsString>,
    /// The subcommand after alias resolution (`None` for `git` alone or `git --exec-path`).
    pub subcommand: Option<String>,
    /// Arguments after the subcommand (alias arguments included).
    pub args: Vec<OsString>,
    /// The effective directory after applying every `-C`.
    pub cwd: PathBuf,
    /// Alias names expanded to reach `subcommand`, outermost first.
    pub aliases: Vec<String>,
    /// When `subcommand` is a shell alias (`!…`), its text: the command cannot be planned.
    pub shell_alias: Option<String>,
}

/// `git reset` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetMode {
    Soft,
    Mixed,
    Hard,
    Merge,
    Keep,
}

/// Where a multi-step command (merge, rebase) is in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    Continue,
    Skip,
    Abort,
    Quit,
    /// `--edit-todo`, `--show-current-patch`: touches no file.
    Inspect,
}

/// What a `git stash` invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StashAction {
    /// `push`, `save`, or bare `git stash [options]`.
    Push,
    Pop,
    Apply,
    /// `git stash branch <name> [<stash>]`.
    Branch(String),
    /// list, show, drop, clear, create, store: no worktree change.
    Inspect,
}

/// The git operation an argv performs, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `checkout` or `switch` (`switch: true`).
    Checkout {
        /// The revision switched to, or the tree-ish paths are taken from (`-` already `@{-1}`).
        target: Option<String>,
        /// Pathspecs (path mode); empty for a branch switch.
        paths: Vec<String>,
        /// `-b/-B/-c/-C/--orphan <name>`.
        new_branch: Option<String>,
        force: bool,
        detach: bool,
        orphan: bool,
        /// `--no-overlay` (path mode also deletes tracked files the source lacks).
        no_overlay: bool,
        switch: bool,
    },
    Reset {
        mode: ResetMode,
        target: Option<String>,
        paths: Vec<String>,
    },
    Pull {
        remote: Option<String>,
        refspecs: Vec<String>,
        /// `Some` when given on the command line (`--rebase[=…]`, `--no-rebase`), else config decides.
        rebase: Option<bool>,
        /// `--all`.
        all: bool,
    },
    Merge {
        revs: Vec<String>,
        step: Step,
    },
    Rebase {
        upstream: Option<String>,
        onto: Option<String>,
        branch: Option<String>,
        keep_base: bool,
        root: bool,
        step: Step,
    },
    /// `clean`; `args` are the flags and pathspecs for the `git clean -n` dry run.
    Clean {
        args: Vec<String>,
    },
    Stash {
        action: StashAction,
        untracked: bool,
        all: bool,
        paths: Vec<String>,
        /// The stash entry for pop/apply/branch (`stash@{n}`), `None` = latest.
        stash: Option<String>,
    },
    Rm {
        cached: bool,
        dry_run: bool,
        paths: Vec<String>,
    },
    Restore {
        staged: bool,
        worktree: bool,
        source: Option<String>,
        paths: Vec<String>,
        no_overlay: bool,
    },
    /// A command that could touch files but cannot be understood (shell alias, unknown option…).
    Unknown {
        subcommand: String,
    },
    /// Everything else (status, log, commit, fetch, push…): git runs untouched.
    Other,
}

/// Why a database is at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Git writes another version over it (including an ignored/untracked file the target tracks).
    Overwritten,
    /// The target does not track it: git deletes it.
    Deleted,
    /// Its local modifications are thrown away (reset --hard, restore, checkout -- path…).
    Discarded,
    /// `git clean` removes it.
    Cleaned,
    /// `git stash` moves it (or its changes) into the stash.
    Stashed,
    /// `git rm` deletes it.
    Removed,
    /// Planning failed; snapshotted to be safe.
    Fallback,
}

/// One database path git is about to touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRisk {
    /// Worktree-relative path, as given in `databases`.
    pub path: PathBuf,
    pub why: Reason,
}

/// The result of planning one git invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub operation: Operation,
    /// Sorted by path, one entry per path.
    pub at_risk: Vec<AtRisk>,
    /// `Some(why)` when planning failed and every database is listed.
    pub fallback_reason: Option<String>,
}

impl Plan {
    /// The fail-safe plan: every database is at risk (the probe's excluded ones too).
    pub fn everything(databases: &[PathBuf], probe: Option<Probe<'_>>, reason: &str) -> Plan {
        let dbs = DbSet::new(databases, probe).unwrap_or_else(|_| DbSet {
            by_norm: Default::default(),
            probe,
        });
        let mut risk = Risk::default();
        dbs.discover(Path::new(""));
        for db in databases.iter().cloned().chain(dbs.all()) {
            risk.add(&db, Reason::Fallback);
        }
        Plan {
            operation: Operation::Other,
            at_risk: risk.into_vec(),
            fallback_reason: Some(reason.to_string()),
        }
    }

    /// True when git can run without snapshotting anything.
    pub fn is_empty(&self) -> bool {
        self.at_risk.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Running git

/// Run `git <args>` in `repo_dir` and return its stdout (lossy UTF-8); a non-zero exit is an error.
pub fn git_output<I, S>(repo_dir: &Path, args: I) -> Result<String, PlanError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = git_raw(repo_dir, &args, false)?;
    check(repo_dir, &args, out).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn git_raw(dir: &Path, args: &[OsString], internal: bool) -> Result<Output, PlanError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_EXTERNAL_DIFF");
    if internal {
        for v in [
            "GIT_LITERAL_PATHSPECS",
            "GIT_GLOB_PATHSPECS",
            "GIT_NOGLOB_PATHSPECS",
            "GIT_ICASE_PATHSPECS",
        ] {
            cmd.env_remove(v);
        }
    }
    cmd.output().map_err(|source| PlanError::Spawn {
        dir: dir.to_owned(),
        source,
    })
}

fn check(dir: &Path, args: &[OsString], out: Output) -> Result<Vec<u8>, PlanError> {
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(PlanError::Git {
            args: args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            dir: dir.to_owned(),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Git queries for one invocation: run in its effective cwd with its global options.
struct Git {
    dir: PathBuf,
    /// Global options for queries that take the user's pathspecs.
    user: Vec<OsString>,
    /// Global options for queries with our own `:(top,literal)` pathspecs.
    internal: Vec<OsString>,
}

fn to_os<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

impl Git {
    fn new(inv: &GitInvocation) -> Git {
        let user = query_globals(&inv.global);
        let internal = user
            .iter()
            .filter(|a| {
                !matches!(
                    a.to_str(),
                    Some(
                        "--literal-pathspecs"
                            | "--glob-pathspecs"
                            | "--noglob-pathspecs"
                            | "--icase-pathspecs"
                    )
                )
            })
            .cloned()
            .collect();
        Git {
            dir: inv.cwd.clone(),
            user,
            internal,
        }
    }

    fn raw(&self, args: &[OsString], internal: bool) -> Result<Output, PlanError> {
        let mut full = if internal {
            self.internal.clone()
        } else {
            self.user.clone()
        };
        full.extend(args.iter().cloned());
        git_raw(&self.dir, &full, internal)
    }

    /// stdout of a successful query.
    fn bytes<I, S>(&self, args: I) -> Result<Vec<u8>, PlanError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.bytes_mode(args, false)
    }

    fn bytes_mode<I, S>(&self, args: I, internal: bool) -> Result<Vec<u8>, PlanError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = to_os(args);
        let out = self.raw(&args, internal)?;
        check(&self.dir, &args, out)
    }

    fn text<I, S>(&self, args: I) -> Result<String, PlanError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Ok(String::from_utf8_lossy(&self.bytes(args)?)
            .trim()
            .to_owned())
    }

    /// Exit 0 → true, exit 1 → false, anything else → error.
    fn test<I, S>(&self, args: I) -> Result<bool, PlanError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = to_os(args);
        let out = self.raw(&args, false)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => check(&self.dir, &args, out).map(|_| false),
        }
    }

    /// `git config --get key`, `None` when unset.
    fn config(&self, key: &str) -> Result<Option<String>, PlanError> {
        let args = to_os(["config", "--get", key]);
        let out = self.raw(&args, false)?;
        match out.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
            )),
            Some(1) => Ok(None),
            _ => check(&self.dir, &args, out).map(|_| None),
        }
    }

    /// Resolve a revision to a commit id, `None` when it does not name a commit.
    fn commit(&self, rev: &str) -> Result<Option<String>, PlanError> {
        self.peel(rev, "commit")
    }

    fn peel(&self, rev: &str, kind: &str) -> Result<Option<String>, PlanError> {
        if rev.starts_with('-') || rev.is_empty() {
            return Ok(None);
        }
        let args = to_os([
            "rev-parse".to_owned(),
            "--verify".to_owned(),
            "-q".to_owned(),
            format!("{rev}^{{{kind}}}"),
        ]);
        let out = self.raw(&args, false)?;
        match out.status.code() {
            Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
            Some(1) => Ok(None),
            _ => check(&self.dir, &args, out).map(|_| None),
        }
    }

    /// A commit id or an error naming the revision.
    fn must_commit(&self, rev: &str) -> Result<String, PlanError> {
        self.commit(rev)?.ok_or_else(|| {
            PlanError::Unplannable(format!("cannot resolve revision '{rev}' to a commit"))
        })
    }

    fn must_tree(&self, rev: &str) -> Result<String, PlanError> {
        self.peel(rev, "tree")?
            .ok_or_else(|| PlanError::Unplannable(format!("cannot resolve '{rev}' to a tree")))
    }

    /// HEAD's tree, or the empty tree when HEAD is unborn.
    fn head_tree(&self) -> Result<String, PlanError> {
        match self.peel("HEAD", "tree")? {
            Some(t) => Ok(t),
            None => self.empty_tree(),
        }
    }

    fn empty_tree(&self) -> Result<String, PlanError> {
        self.text(["hash-object", "-t", "tree", "/dev/null"])
    }

    fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, PlanError> {
        self.test(["merge-base", "--is-ancestor", a, b])
    }

    /// `diff-tree` between two tree-ishes: path → Overwritten / Deleted (absent from `to`).
    fn diff_trees(&self, from: &str, to: &str) -> Result<Changes, PlanError> {
        let out = self.bytes([
            "diff-tree",
            "-r",
            "-z",
            "--no-renames",
            "--name-status",
            from,
            to,
        ])?;
        Ok(parse_name_status(&out, |status| {
            if status.starts_with('D') {
                Some(Reason::Deleted)
            } else {
                Some(Reason::Overwritten)
            }
        }))
    }

    /// Tracked paths whose index or worktree differs from HEAD (`X`/`Y` of porcelain status).
    fn modified_tracked(&self, pathspec: &[String]) -> Result<Vec<StatusEntry>, PlanError> {
        let mut args = to_os([
            "status",
            "--porcelain=v1",
            "-z",
            "--no-renames",
            "--untracked-files=no",
            "--ignore-submodules=all",
        ]);
        if !pathspec.is_empty() {
            args.push("--".into());
            args.extend(pathspec.iter().map(OsString::from));
        }
        Ok(parse_status(&self.bytes(args)?))
    }

    /// `ls-files --full-name -z <extra> -- pathspec`.
    fn ls_files(&self, extra: &[&str], pathspec: &[String]) -> Result<Vec<PathBuf>, PlanError> {
        let mut args = to_os(["ls-files", "-z", "--full-name"]);
        args.extend(extra.iter().map(OsString::from));
        args.push("--".into());
        args.extend(pathspec.iter().map(OsString::from));
        Ok(split_z(&self.bytes(args)?).map(bytes_to_path).collect())
    }

    /// Untracked databases (ignored ones too when `ignored`) under the user's pathspec
    /// (every database when the pathspec is empty).
    fn untracked(
        &self,
        pathspec: &[String],
        ignored: bool,
        dbs: &DbSet,
    ) -> Result<Vec<PathBuf>, PlanError> {
        let mut args = to_os(["ls-files", "-z", "--full-name", "--others"]);
        if !ignored {
            args.push("--exclude-standard".into());
        }
        args.push("--".into());
        let internal = pathspec.is_empty();
        if internal {
            args.extend(dbs.literal_pathspecs());
        } else {
            args.extend(pathspec.iter().map(OsString::from));
        }
        Ok(split_z(&self.bytes_mode(args, internal)?)
            .map(bytes_to_path)
            .collect())
    }
}

/// The user's global options minus those already applied (`-C`) or irrelevant to queries (pager).
fn query_globals(global: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < global.len() {
        let a = global[i].to_str().unwrap_or("");
        match a {
            "-C" => i += 1,
            "-p" | "--paginate" | "-P" | "--no-pager" => {}
            _ if takes_separate_value(a) => {
                out.push(global[i].clone());
                if let Some(v) = global.get(i + 1) {
                    out.push(v.clone());
                }
                i += 1;
            }
            _ => out.push(global[i].clone()),
        }
        i += 1;
    }
    out
}

fn takes_separate_value(opt: &str) -> bool {
    matches!(
        opt,
        "-C" | "-c"
            | "--git-dir"
            | "--work-tree"
            | "--namespace"
            | "--super-prefix"
            | "--config-env"
            | "--attr-source"
    )
}

// ---------------------------------------------------------------------------------------------
// Output parsing

type Changes = Vec<(PathBuf, Reason)>;

fn split_z(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|b| *b == 0).filter(|s| !s.is_empty())
}

#[cfg(unix)]
fn bytes_to_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn bytes_to_path(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// `--name-status -z` output: `S\0path\0` records (renames/copies carry two paths).
fn parse_name_status(out: &[u8], map: impl Fn(&str) -> Option<Reason>) -> Changes {
    let mut fields = out.split(|b| *b == 0);
    let mut changes = Vec::new();
    while let Some(status) = fields.next() {
        if status.is_empty() {
            continue;
        }
        let status = String::from_utf8_lossy(status);
        let two = status.starts_with('R') || status.starts_with('C');
        let Some(path) = fields.next() else { break };
        let reason = map(&status);
        if two {
            // old path is gone (Deleted), new one written
            if let Some(new) = fields.next() {
                changes.push((bytes_to_path(path), Reason::Deleted));
                if reason.is_some() {
                    changes.push((bytes_to_path(new), Reason::Overwritten));
                }
            }
        } else if let Some(r) = reason {
            changes.push((bytes_to_path(path), r));
        }
    }
    changes
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StatusEntry {
    x: u8,
    y: u8,
    path: PathBuf,
}

/// `git status --porcelain=v1 -z`: `XY path\0` (renames: `XY new\0old\0`).
fn parse_status(out: &[u8]) -> Vec<StatusEntry> {
    let mut fields = out.split(|b| *b == 0);
    let mut entries = Vec::new();
    while let Some(rec) = fields.next() {
        if rec.len() < 4 {
            continue;
        }
        let (x, y) = (rec[0], rec[1]);
        entries.push(StatusEntry {
            x,
            y,
            path: bytes_to_path(&rec[3..]),
        });
        if (matches!(x, b'R' | b'C') || matches!(y, b'R' | b'C'))
            && let Some(old) = fields.next()
        {
            entries.push(StatusEntry {
                x,
                y,
                path: bytes_to_path(old),
            });
        }
    }
    entries
        .into_iter()
        .filter(|e| !matches!((e.x, e.y), (b'?', _) | (b'!', _)))
        .collect()
}

/// `git merge-tree --write-tree -z --name-only`: `tree\0` then conflicted paths, `\0\0`, messages.
fn parse_merge_tree(out: &[u8]) -> Option<(String, Vec<PathBuf>)> {
    let mut fields = out.split(|b| *b == 0);
    let tree = String::from_utf8_lossy(fields.next()?).trim().to_owned();
    if tree.is_empty() || !tree.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut conflicts = Vec::new();
    for f in fields {
        if f.is_empty() {
            break;
        }
        conflicts.push(bytes_to_path(f));
    }
    Some((tree, conflicts))
}

/// Undo git's C-style quoting (`"a\tb\303\251"`); unquoted input is returned as is.
fn unquote_c(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return b.to_vec();
    }
    let inner = &b[1..b.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' || i + 1 == inner.len() {
            out.push(inner[i]);
            i += 1;
            continue;
        }
        let c = inner[i + 1];
        i += 2;
        match c {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < inner.len() && (b'0'..=b'7').contains(&inner[i]) {
                    v = v * 8 + u32::from(inner[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// Lexically normalize a worktree-relative path (`a/./b/../c` → `a/c`); `None` if it escapes.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The set of databases and the at-risk accumulator

/// Finds databases the caller's scan left out (configured exclusions) at or below a
/// worktree-relative path that git reported: `dir/` → every database under it, a file →
/// itself when it is a database. Planning learns what git will touch from git itself, so an
/// exclusion can save scanning time but never hides a database from the plan.
pub type Probe<'p> = &'p dyn Fn(&Path) -> Vec<PathBuf>;

struct DbSet<'p> {
    /// normalized path → the caller's path (or the probe's, for a database it found).
    by_norm: std::cell::RefCell<BTreeMap<PathBuf, PathBuf>>,
    probe: Option<Probe<'p>>,
}

impl<'p> DbSet<'p> {
    fn new(databases: &[PathBuf], probe: Option<Probe<'p>>) -> Result<Self, PlanError> {
        let mut by_norm = BTreeMap::new();
        for db in databases {
            let n = normalize(db)
                .filter(|n| !n.as_os_str().is_empty())
                .ok_or_else(|| PlanError::InvalidPath(db.clone()))?;
            by_norm.insert(n, db.clone());
        }
        Ok(DbSet {
            by_norm: std::cell::RefCell::new(by_norm),
            probe,
        })
    }

    /// Learn the databases the probe finds at or below `path`.
    fn discover(&self, path: &Path) {
        let Some(probe) = self.probe else { return };
        for found in probe(path) {
            if let Some(n) = normalize(&found).filter(|n| !n.as_os_str().is_empty()) {
                self.by_norm.borrow_mut().entry(n).or_insert(found);
            }
        }
    }

    fn all(&self) -> Vec<PathBuf> {
        self.by_norm.borrow().values().cloned().collect()
    }

    /// `:(top,literal)<path>` for each database.
    fn literal_pathspecs(&self) -> Vec<OsString> {
        self.by_norm
            .borrow()
            .keys()
            .map(|p| {
                let mut s = OsString::from(":(top,literal)");
                s.push(p.as_os_str());
                s
            })
            .collect()
    }

    /// The database at exactly `path`.
    fn exact(&self, path: &Path) -> Option<PathBuf> {
        let n = normalize(path)?;
        if !self.by_norm.borrow().contains_key(&n) {
            self.discover(&n);
        }
        self.by_norm.borrow().get(&n).cloned()
    }

    /// Databases at `path`, under it (a directory), or whose parent directory is `path`
    /// (a file replacing a directory).
    fn touched_by(&self, path: &Path) -> Vec<PathBuf> {
        let Some(n) = normalize(path) else {
            return Vec::new();
        };
        self.discover(&n);
        let by_norm = self.by_norm.borrow();
        let mut hits: Vec<PathBuf> = by_norm
            .range(n.clone()..)
            .take_while(|(k, _)| k.starts_with(&n))
            .map(|(_, v)| v.clone())
            .collect();
        // a database where the target has a directory: `db` is a prefix of `path`
        for anc in n.ancestors().skip(1) {
            if anc.as_os_str().is_empty() {
                break;
            }
            if let Some(v) = by_norm.get(anc) {
                hits.push(v.clone());
            }
        }
        hits
    }
}

#[derive(Default)]
struct Risk {
    map: BTreeMap<PathBuf, Reason>,
}

impl Risk {
    fn add(&mut self, path: &Path, why: Reason) {
        self.map.entry(path.to_owned()).or_insert(why);
    }

    /// Add every database touched by `changes` (exact, below a changed directory, or where
    /// a changed path needs the database's place as a directory).
    fn add_changes(&mut self, dbs: &DbSet, changes: &[(PathBuf, Reason)]) {
        for (p, why) in changes {
            for db in dbs.touched_by(p) {
                let why = if db.as_path() == p.as_path() || dbs.exact(p).as_ref() == Some(&db) {
                    *why
                } else {
                    Reason::Overwritten
                };
                self.add(&db, why);
            }
        }
    }

    /// Add the databases at exactly these paths.
    fn add_exact<'p>(
        &mut self,
        dbs: &DbSet,
        paths: impl IntoIterator<Item = &'p PathBuf>,
        why: Reason,
    ) {
        for p in paths {
            if let Some(db) = dbs.exact(p) {
                self.add(&db, why);
            }
        }
    }

    fn into_vec(self) -> Vec<AtRisk> {
        self.map
            .into_iter()
            .map(|(path, why)| AtRisk { path, why })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Global options and aliases

/// Builtin git commands: git never looks these up as aliases.
#[rustfmt::skip]
const BUILTINS: &[&str] = &[
    "add", "am", "annotate", "apply", "archive", "bisect", "blame", "branch", "bugreport", "bundle",
    "cat-file", "check-attr", "check-ignore", "check-mailmap", "check-ref-format", "checkout",
    "checkout-index", "cherry", "cherry-pick", "clean", "clone", "column", "commit", "commit-graph",
    "commit-tree", "config", "count-objects", "credential", "describe", "diagnose", "diff",
    "diff-files", "diff-index", "diff-tree", "difftool", "fast-export", "fast-import", "fetch",
    "fetch-pack", "fmt-merge-msg", "for-each-ref", "for-each-repo", "format-patch", "fsck",
    "fsmonitor--daemon", "gc", "grep", "hash-object", "help", "hook", "index-pack", "init",
    "interpret-trailers", "log", "ls-files", "ls-remote", "ls-tree", "mailinfo", "mailsplit",
    "maintenance", "merge", "merge-base", "merge-file", "merge-index", "merge-tree", "mktag",
    "mktree", "multi-pack-index", "mv", "name-rev", "notes", "pack-objects", "pack-refs",
    "patch-id", "prune", "prune-packed", "pull", "push", "range-diff", "read-tree", "rebase",
    "receive-pack", "reflog", "refs", "remote", "repack", "replace", "replay", "rerere", "reset",
    "restore", "rev-list", "rev-parse", "revert", "rm", "send-pack", "shortlog", "show",
    "show-branch", "show-index", "show-ref", "sparse-checkout", "stash", "status", "stripspace",
    "submodule", "switch", "symbolic-ref", "tag", "unpack-file", "unpack-objects", "update-index",
    "update-ref", "update-server-info", "upload-archive", "upload-pack", "var", "verify-commit",
    "verify-pack", "verify-tag", "version", "whatchanged", "worktree", "write-tree",
];

/// Subcommands that can overwrite or delete worktree files and that [`plan`] models.
pub fn is_risky_subcommand(name: &str) -> bool {
    matches!(
        name,
        "checkout"
            | "switch"
            | "reset"
            | "pull"
            | "merge"
            | "rebase"
            | "clean"
            | "stash"
            | "rm"
            | "restore"
    )
}

const ALIAS_DEPTH: usize = 16;

/// Parse git's argv (without the leading `git`) run from `cwd`: global options, then the
/// subcommand with aliases resolved through `git config` (honouring `-c` and `-C`).
pub fn parse_invocation(argv: &[OsString], cwd: &Path) -> Result<GitInvocation, PlanError> {
    let mut inv = GitInvocation {
        global: Vec::new(),
        subcommand: None,
        args: Vec::new(),
        cwd: cwd.to_owned(),
        aliases: Vec::new(),
        shell_alias: None,
    };
    let mut rest: std::collections::VecDeque<OsString> = argv.iter().cloned().collect();
    loop {
        let in_alias = !inv.aliases.is_empty();
        // global options
        while let Some(a) = rest.front() {
            let Some(s) = a.to_str() else { break };
            if !s.starts_with('-') {
                break;
            }
            let s = s.to_owned();
            rest.pop_front();
            let changes_env = |inv: &GitInvocation| -> Result<(), PlanError> {
                if in_alias {
                    Err(PlanError::InvalidArgs(format!(
                        "alias '{}' changes environment variables ({s})",
                        inv.aliases.last().map(String::as_str).unwrap_or("")
                    )))
                } else {
                    Ok(())
                }
            };
            match s.as_str() {
                "--help" | "-h" | "--version" | "-v" => {
                    inv.subcommand = Some(if s.contains('h') { "help" } else { "version" }.into());
                    inv.args = rest.into_iter().collect();
                    return Ok(inv);
                }
                "--exec-path" | "--html-path" | "--man-path" | "--info-path" => {
                    inv.global.push(s.into());
                    inv.args = rest.into_iter().collect();
                    return Ok(inv);
                }
                _ if s.starts_with("--list-cmds=") => {
                    inv.global.push(s.into());
                    inv.args = rest.into_iter().collect();
                    return Ok(inv);
                }
                "-C" => {
                    changes_env(&inv)?;
                    let dir = rest.pop_front().ok_or_else(|| {
                        PlanError::InvalidArgs("no directory given for -C".into())
                    })?;
                    if !dir.is_empty() {
                        inv.cwd = inv.cwd.join(&dir);
                    }
                    inv.global.push(s.into());
                    inv.global.push(dir);
                }
                "-c" | "--config-env" | "--git-dir" | "--work-tree" | "--namespace"
                | "--super-prefix" | "--attr-source" => {
                    if s != "-c" && s != "--config-env" {
                        changes_env(&inv)?;
                    }
                    let v = rest
                        .pop_front()
                        .ok_or_else(|| PlanError::InvalidArgs(format!("no value given for {s}")))?;
                    inv.global.push(s.into());
                    inv.global.push(v);
                }
                "--bare" => {
                    changes_env(&inv)?;
                    inv.global.push(s.into());
                }
                "-p"
                | "--paginate"
                | "-P"
                | "--no-pager"
                | "--no-replace-objects"
                | "--literal-pathspecs"
                | "--glob-pathspecs"
                | "--noglob-pathspecs"
                | "--icase-pathspecs"
                | "--no-optional-locks"
                | "--no-lazy-fetch"
                | "--no-advice" => inv.global.push(s.into()),
                _ if s.starts_with("--config-env=") => inv.global.push(s.into()),
                _ if [
                    "--git-dir=",
                    "--work-tree=",
                    "--namespace=",
                    "--super-prefix=",
                    "--exec-path=",
                ]
                .iter()
                .any(|p| s.starts_with(p)) =>
                {
                    changes_env(&inv)?;
                    inv.global.push(s.into());
                }
                _ if s.starts_with("--attr-source=") => inv.global.push(s.into()),
                _ => return Err(PlanError::InvalidArgs(format!("unknown option: {s}"))),
            }
        }
        let Some(cmd) = rest.pop_front() else {
            inv.args = Vec::new();
            return Ok(inv);
        };
        let name = cmd
            .to_str()
            .ok_or_else(|| PlanError::InvalidArgs(format!("subcommand {cmd:?} is not UTF-8")))?
            .to_owned();
        let is_help = rest.front().is_some_and(|a| a == "--help");
        if BUILTINS.contains(&name.as_str()) || is_help {
            inv.subcommand = Some(name);
            inv.args = rest.into_iter().collect();
            return Ok(inv);
        }
        let mut q = query_globals(&inv.global);
        q.extend(to_os(["config", "--get", &format!("alias.{name}")]));
        let out = git_raw(&inv.cwd, &q, false)?;
        let value = match out.status.code() {
            Some(0) => String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
            // not an alias (or an invalid key): an external command or a typo
            Some(1) => {
                inv.subcommand = Some(name);
                inv.args = rest.into_iter().collect();
                return Ok(inv);
            }
            _ => {
                check(&inv.cwd, &q, out)?;
                unreachable!("check fails on a non-zero exit")
            }
        };
        if inv.aliases.contains(&name) {
            inv.aliases.push(name);
            return Err(PlanError::AliasLoop(inv.aliases.join(" -> ")));
        }
        inv.aliases.push(name.clone());
        if inv.aliases.len() > ALIAS_DEPTH {
            return Err(PlanError::AliasLoop(inv.aliases.join(" -> ")));
        }
        if let Some(shell) = value.strip_prefix('!') {
            inv.subcommand = Some(name);
            inv.shell_alias = Some(shell.to_owned());
            inv.args = rest.into_iter().collect();
            return Ok(inv);
        }
        let words = split_cmdline(&value)
            .map_err(|e| PlanError::InvalidArgs(format!("alias '{name}': {e}")))?;
        if words.is_empty() {
            return Err(PlanError::InvalidArgs(format!("empty alias for '{name}'")));
        }
        for w in words.into_iter().rev() {
            rest.push_front(w.into());
        }
    }
}

/// Split an alias value like git's `split_cmdline`: whitespace separates, `'…'` and `"…"`
/// quote, a backslash escapes the next character (outside single quotes).
fn split_cmdline(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), _) => cur.push(c),
            (_, '\\') => {
                let n = chars.next().ok_or("cmdline ends with \\")?;
                cur.push(n);
                in_word = true;
            }
            (Some(_), _) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The `git fetch` argv (after `git`, to run in `inv.cwd`) that a `git pull` invocation
/// performs first; empty when `inv` is not a pull.
pub fn pull_fetch_args(inv: &GitInvocation) -> Vec<OsString> {
    if inv.subcommand.as_deref() != Some("pull") {
        return Vec::new();
    }
    let mut out = query_globals(&inv.global);
    out.push("fetch".into());
    // unparsable: a plain fetch of the default remote still updates the upstream
    if let Ok(Operation::Pull {
        remote,
        refspecs,
        all,
        ..
    }) = parse_pull(&inv.args)
    {
        if all {
            out.push("--all".into());
        } else if let Some(r) = remote {
            out.push("--end-of-options".into());
            out.push(r.into());
            out.extend(refspecs.into_iter().map(OsString::from));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Subcommand option parsing (a small model of git's parse-options)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    No,
    Req,
    /// Only attached: `--opt=v`, `-Sv`.
    Opt,
}

#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    long: Option<&'static str>,
    short: Option<char>,
    val: Val,
}

const fn o(name: &'static str, short: Option<char>, val: Val) -> Spec {
    Spec {
        name,
        long: Some(name),
        short,
        val,
    }
}

/// A short-only option.
const fn s(c: char, name: &'static str, val: Val) -> Spec {
    Spec {
        name,
        long: None,
        short: Some(c),
        val,
    }
}

#[derive(Debug, Default)]
struct Parsed {
    /// (canonical name, negated, value) in order.
    hits: Vec<(&'static str, bool, Option<String>)>,
    /// Positional arguments before `--`.
    before: Vec<String>,
    /// Arguments after `--`, `None` when there was no `--`.
    after: Option<Vec<String>>,
}

impl Parsed {
    /// The last occurrence of `name` (or of any of `names`): `Some(true)` set, `Some(false)` negated.
    fn flag(&self, names: &[&str]) -> Option<bool> {
        self.hits
            .iter()
            .rev()
            .find(|(n, _, _)| names.contains(n))
            .map(|(_, neg, _)| !neg)
    }

    fn has(&self, name: &str) -> bool {
        self.flag(&[name]) == Some(true)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.hits
            .iter()
            .rev()
            .find(|(n, neg, _)| *n == name && !neg)
            .and_then(|(_, _, v)| v.as_deref())
    }

    /// Last value of `name`, also when given as a bare flag (`Some(None)`), `None` if negated/absent.
    fn opt_value(&self, name: &str) -> Option<Option<&str>> {
        let (_, neg, v) = self.hits.iter().rev().find(|(n, _, _)| *n == name)?;
        if *neg { None } else { Some(v.as_deref()) }
    }

    /// Positionals before and after `--` together.
    fn all_positional(&self) -> Vec<String> {
        let mut v = self.before.clone();
        v.extend(self.after.clone().unwrap_or_default());
        v
    }
}

fn unsupported(cmd: &str, what: impl std::fmt::Display) -> PlanError {
    PlanError::Unplannable(format!("git {cmd}: {what}"))
}

fn utf8_args(cmd: &str, args: &[OsString]) -> Result<Vec<String>, PlanError> {
    args.iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .ok_or_else(|| unsupported(cmd, format_args!("argument {a:?} is not UTF-8")))
        })
        .collect()
}

fn parse_opts(cmd: &str, args: &[String], specs: &[Spec]) -> Result<Parsed, PlanError> {
    let mut p = Parsed::default();
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.after = Some(args[i..].to_vec());
            break;
        }
        if options_done || a == "-" || !a.starts_with('-') {
            p.before.push(a.clone());
            continue;
        }
        if a == "--end-of-options" {
            options_done = true;
            continue;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, val) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let (spec, neg) = find_long(cmd, specs, name)?;
            let val = match (spec.val, val, neg) {
                (_, Some(_), true) | (Val::No, Some(_), false) => {
                    return Err(unsupported(cmd, format_args!("--{name} takes no value")));
                }
                (Val::Req, None, false) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| unsupported(cmd, format_args!("--{name} needs a value")))?;
                    i += 1;
                    Some(v.clone())
                }
                (_, v, _) => v,
            };
            p.hits.push((spec.name, neg, val));
            continue;
        }
        // a cluster of short options
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let spec = specs
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| unsupported(cmd, format_args!("unknown option -{c}")))?;
            let rest: String = chars[j..].iter().collect();
            match spec.val {
                Val::No => p.hits.push((spec.name, false, None)),
                Val::Opt => {
                    p.hits
                        .push((spec.name, false, (!rest.is_empty()).then_some(rest)));
                    break;
                }
                Val::Req => {
                    let v = if rest.is_empty() {
                        let v = args
                            .get(i)
                            .ok_or_else(|| unsupported(cmd, format_args!("-{c} needs a value")))?;
                        i += 1;
                        v.clone()
                    } else {
                        rest
                    };
                    p.hits.push((spec.name, false, Some(v)));
                    break;
                }
            }
        }
    }
    Ok(p)
}

/// Exact long name, `no-` negation, or a unique abbreviation (as git's parse-options allows).
fn find_long<'s>(cmd: &str, specs: &'s [Spec], name: &str) -> Result<(&'s Spec, bool), PlanError> {
    if let Some(s) = specs.iter().find(|s| s.long == Some(name)) {
        return Ok((s, false));
    }
    if let Some(pos) = name.strip_prefix("no-")
        && let Some(s) = specs.iter().find(|s| s.long == Some(pos))
    {
        return Ok((s, true));
    }
    let mut cands: Vec<(&Spec, bool)> = Vec::new();
    for s in specs {
        let Some(l) = s.long else { continue };
        if l.starts_with(name) {
            cands.push((s, false));
        } else if let Some(pos) = name.strip_prefix("no-")
            && !pos.is_empty()
            && l.starts_with(pos)
        {
            cands.push((s, true));
        }
    }
    match cands.as_slice() {
        [one] => Ok(*one),
        [] => Err(unsupported(cmd, format_args!("unknown option --{name}"))),
        _ => Err(unsupported(cmd, format_args!("ambiguous option --{name}"))),
    }
}

use Val::{No as N, Opt as O, Req as R};

const CHECKOUT: &[Spec] = &[
    o("quiet", Some('q'), N),
    o("progress", None, N),
    o("force", Some('f'), N),
    o("merge", Some('m'), N),
    o("conflict", None, R),
    s('b', "b", R),
    s('B', "B", R),
    s('l', "l", N),
    o("detach", Some('d'), N),
    o("orphan", None, R),
    o("track", Some('t'), O),
    o("guess", None, N),
    o("ignore-skip-worktree-bits", None, N),
    o("ignore-other-worktrees", None, N),
    o("overwrite-ignore", None, N),
    o("recurse-submodules", None, O),
    o("ours", Some('2'), N),
    o("theirs", Some('3'), N),
    o("patch", Some('p'), N),
    o("pathspec-from-file", None, R),
    o("pathspec-file-nul", None, N),
    o("overlay", None, N),
    o("auto-advance", None, N),
];

const SWITCH: &[Spec] = &[
    o("create", Some('c'), R),
    o("force-create", Some('C'), R),
    o("detach", Some('d'), N),
    o("guess", None, N),
    o("discard-changes", None, N),
    o("force", Some('f'), N),
    o("merge", Some('m'), N),
    o("conflict", None, R),
    o("quiet", Some('q'), N),
    o("progress", None, N),
    o("track", Some('t'), O),
    o("orphan", None, R),
    o("ignore-other-worktrees", None, N),
    o("recurse-submodules", None, O),
    o("overwrite-ignore", None, N),
];

const RESET: &[Spec] = &[
    o("quiet", Some('q'), N),
    o("soft", None, N),
    o("mixed", None, N),
    o("hard", None, N),
    o("merge", None, N),
    o("keep", None, N),
    o("refresh", None, N),
    o("recurse-submodules", None, O),
    o("patch", Some('p'), N),
    o("intent-to-add", Some('N'), N),
    o("pathspec-from-file", None, R),
    o("pathspec-file-nul", None, N),
];

const MERGE_OPTS: &[Spec] = &[
    o("stat", None, N),
    s('n', "no-stat-short", N),
    o("summary", None, N),
    o("log", None, O),
    o("compact-summary", None, N),
    o("squash", None, N),
    o("commit", None, N),
    o("edit", Some('e'), N),
    o("cleanup", None, R),
    o("ff", None, N),
    o("ff-only", None, N),
    o("rerere-autoupdate", None, N),
    o("verify-signatures", None, N),
    o("strategy", Some('s'), R),
    o("strategy-option", Some('X'), R),
    o("message", Some('m'), R),
    o("file", Some('F'), R),
    o("into-name", None, R),
    o("verbose", Some('v'), N),
    o("quiet", Some('q'), N),
    o("abort", None, N),
    o("quit", None, N),
    o("continue", None, N),
    o("allow-unrelated-histories", None, N),
    o("progress", None, N),
    o("gpg-sign", Some('S'), O),
    o("autostash", None, N),
    o("overwrite-ignore", None, N),
    o("signoff", None, N),
    o("verify", None, N),
];

const PULL_ONLY: &[Spec] = &[
    o("rebase", Some('r'), O),
    o("recurse-submodules", None, O),
    o("all", None, N),
    o("append", Some('a'), N),
    o("upload-pack", None, R),
    o("force", Some('f'), N),
    o("tags", Some('t'), N),
    o("prune", Some('p'), N),
    o("jobs", Some('j'), R),
    o("dry-run", None, N),
    o("keep", Some('k'), N),
    o("depth", None, R),
    o("shallow-since", None, R),
    o("shallow-exclude", None, R),
    o("deepen", None, R),
    o("unshallow", None, N),
    o("update-shallow", None, N),
    o("refmap", None, R),
    o("server-option", Some('o'), R),
    o("ipv4", Some('4'), N),
    o("ipv6", Some('6'), N),
    o("negotiation-tip", None, R),
    o("show-forced-updates", None, N),
    o("set-upstream", None, N),
];

const REBASE: &[Spec] = &[
    o("onto", None, R),
    o("keep-base", None, N),
    o("continue", None, N),
    o("skip", None, N),
    o("abort", None, N),
    o("quit", None, N),
    o("edit-todo", None, N),
    o("show-current-patch", None, N),
    o("interactive", Some('i'), N),
    o("merge", Some('m'), N),
    o("apply", None, N),
    o("exec", Some('x'), R),
    o("root", None, N),
    o("autosquash", None, N),
    o("autostash", None, N),
    o("rebase-merges", Some('r'), O),
    o("strategy", Some('s'), R),
    o("strategy-option", Some('X'), R),
    o("gpg-sign", Some('S'), O),
    o("quiet", Some('q'), N),
    o("verbose", Some('v'), N),
    o("stat", None, N),
    s('n', "no-stat-short", N),
    o("verify", None, N),
    s('C', "context", R),
    o("ignore-whitespace", None, N),
    o("whitespace", None, R),
    o("committer-date-is-author-date", None, N),
    o("ignore-date", None, N),
    o("reset-author-date", None, N),
    o("signoff", None, N),
    o("force-rebase", Some('f'), N),
    o("ff", None, N),
    o("fork-point", None, N),
    o("empty", None, R),
    o("keep-empty", Some('k'), N),
    o("reapply-cherry-picks", None, N),
    o("allow-empty-message", None, N),
    o("reschedule-failed-exec", None, N),
    o("update-refs", None, N),
    o("rerere-autoupdate", None, N),
    o("trailer", None, R),
];

const CLEAN: &[Spec] = &[
    s('d', "d", N),
    o("force", Some('f'), N),
    o("interactive", Some('i'), N),
    o("dry-run", Some('n'), N),
    o("quiet", Some('q'), N),
    o("exclude", Some('e'), R),
    s('x', "x", N),
    s('X', "X", N),
];

const STASH_PUSH: &[Spec] = &[
    o("patch", Some('p'), N),
    o("staged", Some('S'), N),
    o("keep-index", Some('k'), N),
    o("include-untracked", Some('u'), N),
    o("all", Some('a'), N),
    o("quiet", Some('q'), N),
    o("message", Some('m'), R),
    o("pathspec-from-file", None, R),
    o("pathspec-file-nul", None, N),
];

const STASH_APPLY: &[Spec] = &[o("index", None, N), o("quiet", Some('q'), N)];

const RM: &[Spec] = &[
    o("dry-run", Some('n'), N),
    o("quiet", Some('q'), N),
    o("cached", None, N),
    o("force", Some('f'), N),
    s('r', "r", N),
    o("ignore-unmatch", None, N),
    o("sparse", None, N),
    o("pathspec-from-file", None, R),
    o("pathspec-file-nul", None, N),
];

const RESTORE: &[Spec] = &[
    o("source", Some('s'), R),
    o("staged", Some('S'), N),
    o("worktree", Some('W'), N),
    o("ignore-unmerged", None, N),
    o("overlay", None, N),
    o("quiet", Some('q'), N),
    o("recurse-submodules", None, O),
    o("progress", None, N),
    o("merge", Some('m'), N),
    o("conflict", None, R),
    o("ours", Some('2'), N),
    o("theirs", Some('3'), N),
    o("patch", Some('p'), N),
    o("ignore-skip-worktree-bits", None, N),
    o("pathspec-from-file", None, R),
    o("pathspec-file-nul", None, N),
];

fn no_pathspec_file(cmd: &str, p: &Parsed) -> Result<(), PlanError> {
    if p.value("pathspec-from-file").is_some() {
        Err(unsupported(
            cmd,
            "--pathspec-from-file is not supported by the planner",
        ))
    } else {
        Ok(())
    }
}

fn dash_rev(rev: &str) -> String {
    if rev == "-" {
        "@{-1}".into()
    } else {
        rev.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// argv → Operation

fn parse_operation(git: &Git, inv: &GitInvocation) -> Result<Operation, PlanError> {
    let Some(cmd) = inv.subcommand.as_deref() else {
        return Ok(Operation::Other);
    };
    if !is_risky_subcommand(cmd) {
        return Ok(Operation::Other);
    }
    let args = utf8_args(cmd, &inv.args)?;
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        return Ok(Operation::Other);
    }
    match cmd {
        "checkout" => parse_checkout(git, &args),
        "switch" => parse_switch(git, &args),
        "reset" => parse_reset(git, &args),
        "pull" => parse_pull(&inv.args),
        "merge" => parse_merge(&args),
        "rebase" => parse_rebase(&args),
        "clean" => parse_clean(&args),
        "stash" => parse_stash(&args),
        "rm" => {
            let p = parse_opts(cmd, &args, RM)?;
            no_pathspec_file(cmd, &p)?;
            Ok(Operation::Rm {
                cached: p.has("cached"),
                dry_run: p.has("dry-run"),
                paths: p.all_positional(),
            })
        }
        "restore" => {
            let p = parse_opts(cmd, &args, RESTORE)?;
            no_pathspec_file(cmd, &p)?;
            let staged = p.has("staged");
            let mut paths = p.all_positional();
            if paths.is_empty() && p.has("patch") {
                paths.push(":/".to_owned());
            }
            Ok(Operation::Restore {
                staged,
                worktree: p.has("worktree") || !staged,
                source: p.value("source").map(str::to_owned),
                paths,
                no_overlay: p.flag(&["overlay"]) != Some(true),
            })
        }
        _ => Ok(Operation::Other),
    }
}

/// Is `arg` a path git would accept as a pathspec (tracked, or present on disk)?
fn is_path(git: &Git, arg: &str) -> Result<bool, PlanError> {
    if git.dir.join(arg).symlink_metadata().is_ok() {
        return Ok(true);
    }
    Ok(!git.ls_files(&[], &[arg.to_owned()])?.is_empty())
}

/// `checkout <name>` of a missing local branch with a unique `<remote>/<name>` (`--guess`).
fn dwim_remote_branch(git: &Git, name: &str) -> Result<Option<String>, PlanError> {
    if name.contains(['*', '?', '[']) || name.starts_with('-') {
        return Ok(None);
    }
    let out = git.text([
        "for-each-ref".to_owned(),
        "--format=%(refname)".to_owned(),
        format!("refs/remotes/*/{name}"),
    ])?;
    let refs: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    match refs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        many => {
            if let Some(remote) = git.config("checkout.defaultRemote")? {
                let want = format!("refs/remotes/{remote}/{name}");
                if many.contains(&want.as_str()) {
                    return Ok(Some(want));
                }
            }
            Err(PlanError::Unplannable(format!(
                "'{name}' matches several remote-tracking branches"
            )))
        }
    }
}

fn parse_checkout(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("checkout", args, CHECKOUT)?;
    no_pathspec_file("checkout", &p)?;
    let orphan = p.value("orphan").is_some();
    let new_branch = p
        .value("b")
        .or(p.value("B"))
        .or(p.value("orphan"))
        .map(str::to_owned);
    let (target, paths) = match &p.after {
        Some(after) => {
            if p.before.len() > 1 {
                return Err(unsupported(
                    "checkout",
                    "only one reference expected before --",
                ));
            }
            (p.before.first().map(|r| dash_rev(r)), after.clone())
        }
        None => match p.before.split_first() {
            None => (None, Vec::new()),
            Some((first, rest)) => {
                let rev = dash_rev(first);
                // with -b/--detach the argument is a start point; otherwise a revision
                // (a tree-ish when paths follow) wins over a path, as in git
                if new_branch.is_some()
                    || p.has("detach")
                    || (rest.is_empty() && git.commit(&rev)?.is_some())
                    || (!rest.is_empty() && git.peel(&rev, "tree")?.is_some())
                {
                    (Some(rev), rest.to_vec())
                } else if rest.is_empty()
                    && p.flag(&["guess"]) != Some(false)
                    && let Some(remote) = dwim_remote_branch(git, first)?
                {
                    (Some(remote), Vec::new())
                } else if p.before.iter().all(|a| is_path(git, a).unwrap_or(true)) || p.has("patch")
                {
                    (None, p.before.clone())
                } else {
                    return Err(unsupported(
                        "checkout",
                        format_args!("'{first}' is neither a revision nor a known path"),
                    ));
                }
            }
        },
    };
    // `checkout -p` without a pathspec works on the whole tree
    let paths = if paths.is_empty() && p.has("patch") {
        vec![":/".to_owned()]
    } else {
        paths
    };
    Ok(Operation::Checkout {
        target,
        paths,
        new_branch,
        force: p.has("force"),
        detach: p.has("detach"),
        orphan,
        no_overlay: p.flag(&["overlay"]) == Some(false),
        switch: false,
    })
}

fn parse_switch(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("switch", args, SWITCH)?;
    let pos = p.all_positional();
    if pos.len() > 1 {
        return Err(unsupported("switch", "too many arguments"));
    }
    let new_branch = p
        .value("create")
        .or(p.value("force-create"))
        .or(p.value("orphan"))
        .map(str::to_owned);
    let orphan = p.value("orphan").is_some();
    let mut target = pos.first().map(|r| dash_rev(r));
    if let Some(t) = &target
        && new_branch.is_none()
        && !p.has("detach")
        && git.commit(t)?.is_none()
        && p.flag(&["guess"]) != Some(false)
        && let Some(remote) = dwim_remote_branch(git, t)?
    {
        target = Some(remote);
    }
    if target.is_none() && new_branch.is_none() && !p.has("detach") {
        return Err(unsupported("switch", "missing branch or commit argument"));
    }
    Ok(Operation::Checkout {
        target,
        paths: Vec::new(),
        new_branch,
        force: p.has("force") || p.has("discard-changes"),
        detach: p.has("detach"),
        orphan,
        no_overlay: false,
        switch: true,
    })
}

fn parse_reset(git: &Git, args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("reset", args, RESET)?;
    no_pathspec_file("reset", &p)?;
    let mut mode = ResetMode::Mixed;
    for (name, neg, _) in &p.hits {
        if *neg {
            continue;
        }
        mode = match *name {
            "soft" => ResetMode::Soft,
            "mixed" => ResetMode::Mixed,
            "hard" => ResetMode::Hard,
            "merge" => ResetMode::Merge,
            "keep" => ResetMode::Keep,
            _ => mode,
        };
    }
    let (target, paths) = match &p.after {
        Some(after) => {
            if p.before.len() > 1 {
                return Err(unsupported("reset", "only one revision expected before --"));
            }
            (p.before.first().cloned(), after.clone())
        }
        None => match p.before.split_first() {
            None => (None, Vec::new()),
            Some((first, rest)) => {
                if git.peel(first, "tree")?.is_some() {
                    (Some(first.clone()), rest.to_vec())
                } else if mode == ResetMode::Mixed
                    && p.before.iter().all(|a| is_path(git, a).unwrap_or(true))
                {
                    (None, p.before.clone())
                } else {
                    return Err(unsupported(
                        "reset",
                        format_args!("unknown revision '{first}'"),
                    ));
                }
            }
        },
    };
    Ok(Operation::Reset {
        mode,
        target,
        paths,
    })
}

fn parse_pull(args: &[OsString]) -> Result<Operation, PlanError> {
    let args = utf8_args("pull", args)?;
    let specs: Vec<Spec> = MERGE_OPTS
        .iter()
        .chain(PULL_ONLY)
        .filter(|s| {
            !matches!(
                s.name,
                "abort" | "quit" | "continue" | "message" | "file" | "into-name"
            )
        })
        .copied()
        .collect();
    let p = parse_opts("pull", &args, &specs)?;
    let pos = p.all_positional();
    let rebase = match p.opt_value("rebase") {
        None if p.flag(&["rebase"]) == Some(false) => Some(false),
        None => None,
        Some(None) => Some(true),
        Some(Some(v)) => Some(rebase_value(v)),
    };
    Ok(Operation::Pull {
        remote: pos.first().cloned(),
        refspecs: pos.get(1..).unwrap_or_default().to_vec(),
        rebase,
        all: p.has("all"),
    })
}

fn rebase_value(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "false" | "no" | "off" | "0" | ""
    )
}

fn step_of(p: &Parsed) -> Step {
    let mut step = Step::Start;
    for (name, neg, _) in &p.hits {
        if *neg {
            continue;
        }
        step = match *name {
            "continue" => Step::Continue,
            "skip" => Step::Skip,
            "abort" => Step::Abort,
            "quit" => Step::Quit,
            "edit-todo" | "show-current-patch" => Step::Inspect,
            _ => step,
        };
    }
    step
}

fn parse_merge(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("merge", args, MERGE_OPTS)?;
    Ok(Operation::Merge {
        revs: p.all_positional().iter().map(|r| dash_rev(r)).collect(),
        step: step_of(&p),
    })
}

fn parse_rebase(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("rebase", args, REBASE)?;
    let pos = p.all_positional();
    if pos.len() > 2 {
        return Err(unsupported("rebase", "too many arguments"));
    }
    let root = p.has("root");
    let (upstream, branch) = if root {
        (None, pos.first().cloned())
    } else {
        (pos.first().map(|r| dash_rev(r)), pos.get(1).cloned())
    };
    Ok(Operation::Rebase {
        upstream,
        onto: p.value("onto").map(str::to_owned),
        branch,
        keep_base: p.has("keep-base"),
        root,
        step: step_of(&p),
    })
}

fn parse_clean(args: &[String]) -> Result<Operation, PlanError> {
    let p = parse_opts("clean", args, CLEAN)?;
    let mut out = Vec::new();
    for (name, neg, val) in &p.hits {
        if *neg {
            continue;
        }
        match (*name, val) {
            ("d", _) => out.push("-d".to_owned()),
            ("force", _) => out.push("-f".to_owned()),
            ("x", _) => out.push("-x".to_owned()),
            ("X", _) => out.push("-X".to_owned()),
            ("exclude", Some(v)) => out.push(format!("--exclude={v}")),
            _ => {}
        }
    }
    out.push("--".to_owned());
    out.extend(p.all_positional());
    Ok(Operation::Clean { args: out })
}

fn parse_stash(args: &[String]) -> Result<Operation, PlanError> {
    let (sub, rest) = match args.split_first() {
        Some((s, r)) if !s.starts_with('-') => (s.as_str(), r),
        _ => ("push", args),
    };
    let inspect = Operation::Stash {
        action: StashAction::Inspect,
        untracked: false,
        all: false,
        paths: Vec::new(),
        stash: None,
    };
    match sub {
        "push" | "save" => {
            let p = parse_opts("stash", rest, STASH_PUSH)?;
            no_pathspec_file("stash", &p)?;
            let all = p.has("all");
            // `save` takes a message, not pathspecs; bare `git stash -- paths` is push
            let paths = if sub == "save" {
                Vec::new()
            } else {
                p.all_positional()
            };
            Ok(Operation::Stash {
                action: StashAction::Push,
                untracked: p.has("include-untracked") || all,
                all,
                paths,
                stash: None,
            })
        }
        "pop" | "apply" | "branch" => {
            let p = parse_opts("stash", rest, STASH_APPLY)?;
            let mut pos = p.all_positional();
            let action = match sub {
                "pop" => StashAction::Pop,
                "apply" => StashAction::Apply,
                _ => {
                    if pos.is_empty() {
                        return Err(unsupported("stash", "branch needs a name"));
                    }
                    StashAction::Branch(pos.remove(0))
                }
            };
            if pos.len() > 1 {
                return Err(unsupported("stash", "too many arguments"));
            }
            let stash = pos.first().map(|s| {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    format!("stash@{{{s}}}")
                } else {
                    s.clone()
                }
            });
            Ok(Operation::Stash {
                action,
                untracked: false,
                all: false,
                paths: Vec::new(),
                stash,
            })
        }
        "list" | "show" | "drop" | "clear" | "create" | "store" => Ok(inspect),
        other => Err(unsupported(
            "stash",
            format_args!("unknown subcommand '{other}'"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Operation → at-risk databases

/// Plan `inv`: which of `databases` (worktree-relative paths of database files on disk,
/// relative to `worktree_root`) git is about to overwrite or delete.
///
/// Never fails for a plannable-but-unknown situation: a risky command that cannot be planned
/// yields every database with [`Plan::fallback_reason`] set. `Err` only for invalid input
/// (a database path that is absolute or escapes the worktree).
pub fn plan(
    inv: &GitInvocation,
    worktree_root: &Path,
    databases: &[PathBuf],
    probe: Option<Probe<'_>>,
) -> Result<Plan, PlanError> {
    let dbs = DbSet::new(databases, probe)?;
    let git = Git::new(inv);
    let fallback = |operation: Operation, reason: String| Plan {
        operation,
        ..Plan::everything(databases, probe, &reason)
    };
    if let Some(shell) = &inv.shell_alias {
        let name = inv.subcommand.clone().unwrap_or_default();
        return Ok(fallback(
            Operation::Unknown {
                subcommand: name.clone(),
            },
            format!(
                "`git {name}` is a shell alias (`!{shell}`): dbguard cannot tell what it touches"
            ),
        ));
    }
    let operation = match parse_operation(&git, inv) {
        Ok(op) => op,
        Err(e) => {
            let sub = inv.subcommand.clone().unwrap_or_default();
            return Ok(fallback(
                Operation::Unknown { subcommand: sub },
                format!("could not plan the command: {e}"),
            ));
        }
    };
    if operation == Operation::Other || (databases.is_empty() && probe.is_none()) {
        return Ok(Plan {
            operation,
            at_risk: Vec::new(),
            fallback_reason: None,
        });
    }
    let mut risk = Risk::default();
    match assess(&git, &operation, worktree_root, &dbs, &mut risk) {
        Ok(()) => Ok(Plan {
            operation,
            at_risk: risk.into_vec(),
            fallback_reason: None,
        }),
        Err(e) => Ok(fallback(
            operation,
            format!("could not plan the command: {e}"),
        )),
    }
}

fn assess(
    git: &Git,
    op: &Operation,
    worktree_root: &Path,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    match op {
        Operation::Checkout {
            target,
            paths,
            force,
            orphan,
            switch,
            no_overlay,
            ..
        } => {
            if !paths.is_empty() {
                return restore_paths(git, target.as_deref(), paths, *no_overlay, dbs, risk);
            }
            if *force {
                let modified = git.modified_tracked(&[])?;
                risk.add_exact(dbs, modified.iter().map(|e| &e.path), Reason::Discarded);
            }
            let head = git.head_tree()?;
            let to = match target {
                _ if *orphan && *switch => git.empty_tree()?,
                None => return Ok(()),
                Some(t) => git.must_commit(t)?,
            };
            risk.add_changes(dbs, &git.diff_trees(&head, &to)?);
        }
        Operation::Reset {
            mode,
            target,
            paths,
        } => {
            if !paths.is_empty() || matches!(mode, ResetMode::Soft | ResetMode::Mixed) {
                return Ok(());
            }
            let to = match target {
                Some(t) => git.must_tree(t)?,
                None => git.head_tree()?,
            };
            let modified = git.modified_tracked(&[])?;
            let discarded = modified.iter().filter(|e| match mode {
                ResetMode::Hard => true,
                ResetMode::Merge => e.x != b' ',
                _ => false,
            });
            risk.add_exact(dbs, discarded.map(|e| &e.path), Reason::Discarded);
            risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &to)?);
        }
        Operation::Pull {
            remote,
            refspecs,
            rebase,
            ..
        } => {
            let rebase = match rebase {
                Some(r) => *r,
                None => pull_rebase_config(git)?,
            };
            for up in pull_upstreams(git, remote.as_deref(), refspecs)? {
                merge_like(git, "HEAD", &up, rebase, dbs, risk)?;
            }
        }
        Operation::Merge { revs, step } => match step {
            Step::Abort => {
                let modified = git.modified_tracked(&[])?;
                risk.add_exact(dbs, modified.iter().map(|e| &e.path), Reason::Discarded);
            }
            Step::Start => {
                let revs = if revs.is_empty() {
                    vec!["@{upstream}".to_owned()]
                } else {
                    revs.clone()
                };
                for r in &revs {
                    let c = git.must_commit(r)?;
                    merge_like(git, "HEAD", &c, false, dbs, risk)?;
                }
            }
            _ => {}
        },
        Operation::Rebase {
            upstream,
            onto,
            branch,
            keep_base,
            root,
            step,
        } => match step {
            Step::Start => {
                let head = git.head_tree()?;
                let ours = match branch {
                    Some(b) => {
                        let c = git.must_commit(b)?;
                        risk.add_changes(dbs, &git.diff_trees(&head, &c)?);
                        c
                    }
                    None => git.must_commit("HEAD")?,
                };
                let upstream = match (upstream, root) {
                    (Some(u), _) => Some(git.must_commit(u)?),
                    (None, false) => Some(git.must_commit("@{upstream}")?),
                    (None, true) => None,
                };
                let onto = match (onto, upstream) {
                    (Some(o), _) => git.must_commit(o)?,
                    (None, Some(u)) if *keep_base => {
                        git.text(["merge-base", u.as_str(), ours.as_str()])?
                    }
                    (None, Some(u)) => u,
                    (None, None) => return Ok(()),
                };
                merge_like(git, &ours, &onto, true, dbs, risk)?;
            }
            Step::Abort => {
                let modified = git.modified_tracked(&[])?;
                risk.add_exact(dbs, modified.iter().map(|e| &e.path), Reason::Discarded);
                if let Some(orig) = rebase_orig_head(git)? {
                    risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &orig)?);
                }
            }
            Step::Continue | Step::Skip => {
                return Err(PlanError::Unplannable(
                    "rebase --continue/--skip replays commits dbguard cannot predict".into(),
                ));
            }
            Step::Quit | Step::Inspect => {}
        },
        Operation::Clean { args } => clean(git, worktree_root, args, dbs, risk)?,
        Operation::Stash {
            action,
            untracked,
            all,
            paths,
            stash,
        } => match action {
            StashAction::Push => {
                let modified = git.modified_tracked(paths)?;
                risk.add_exact(dbs, modified.iter().map(|e| &e.path), Reason::Stashed);
                if *untracked {
                    if paths.is_empty() {
                        // The listing below is limited to known databases: learn the
                        // excluded ones first.
                        dbs.discover(Path::new(""));
                    }
                    let u = git.untracked(paths, *all, dbs)?;
                    risk.add_exact(dbs, &u, Reason::Stashed);
                }
            }
            StashAction::Pop | StashAction::Apply | StashAction::Branch(_) => {
                let s = stash.clone().unwrap_or_else(|| "stash@{0}".to_owned());
                let commit = git.must_commit(&s)?;
                let base = git.must_commit(&format!("{commit}^1"))?;
                if matches!(action, StashAction::Branch(_)) {
                    risk.add_changes(dbs, &git.diff_trees(&git.head_tree()?, &base)?);
                }
                risk.add_changes(dbs, &git.diff_trees(&base, &commit)?);
                if let Some(u) = git.commit(&format!("{commit}^3"))? {
                    let files = git.bytes([
                        "ls-tree",
                        "-r",
                        "-z",
                        "--name-only",
                        "--full-tree",
                        u.as_str(),
                    ])?;
                    let files: Vec<PathBuf> = split_z(&files).map(bytes_to_path).collect();
                    risk.add_exact(dbs, &files, Reason::Overwritten);
                }
            }
            StashAction::Inspect => {}
        },
        Operation::Rm {
            cached,
            dry_run,
            paths,
        } => {
            if !cached && !dry_run && !paths.is_empty() {
                let tracked = git.ls_files(&[], paths)?;
                risk.add_exact(dbs, &tracked, Reason::Removed);
            }
        }
        Operation::Restore {
            staged,
            worktree,
            source,
            paths,
            no_overlay,
        } => {
            if *worktree && !paths.is_empty() {
                let source = match (source, staged) {
                    (Some(s), _) => Some(s.as_str()),
                    (None, true) => Some("HEAD"),
                    (None, false) => None,
                };
                restore_paths(git, source, paths, *no_overlay, dbs, risk)?;
            }
        }
        Operation::Unknown { subcommand } => {
            return Err(PlanError::Unplannable(format!(
                "unknown command '{subcommand}'"
            )));
        }
        Operation::Other => {}
    }
    Ok(())
}

/// Writing `paths` from `source` (a tree-ish) or from the index (`None`) into the worktree.
fn restore_paths(
    git: &Git,
    source: Option<&str>,
    paths: &[String],
    no_overlay: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let mut args = to_os(["-z", "--name-status", "--no-renames"]);
    let changes = match source {
        Some(s) => {
            let tree = git.must_tree(s)?;
            args.insert(0, "diff-index".into());
            args.push(tree.into());
            args.push("--".into());
            args.extend(paths.iter().map(OsString::from));
            // `A`: present locally, absent from the source (removed only without overlay)
            parse_name_status(&git.bytes(args)?, |st| match st.chars().next() {
                Some('A') if no_overlay => Some(Reason::Deleted),
                Some('A') => None,
                _ => Some(Reason::Overwritten),
            })
        }
        None => {
            args.insert(0, "diff-files".into());
            args.push("--".into());
            args.extend(paths.iter().map(OsString::from));
            parse_name_status(&git.bytes(args)?, |_| Some(Reason::Discarded))
        }
    };
    for (p, why) in &changes {
        risk.add_exact(dbs, std::iter::once(p), *why);
    }
    Ok(())
}

/// Merging (or rebasing onto) `theirs` into `ours`, seen from the current HEAD + worktree.
fn merge_like(
    git: &Git,
    ours: &str,
    theirs: &str,
    rebase: bool,
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let head = git.head_tree()?;
    let Some(ours_c) = git.commit(ours)? else {
        // unborn branch: pulling into it checks `theirs` out
        risk.add_changes(dbs, &git.diff_trees(&head, theirs)?);
        return Ok(());
    };
    if ours != "HEAD" {
        risk.add_changes(dbs, &git.diff_trees(&head, &ours_c)?);
    }
    if git.is_ancestor(theirs, &ours_c)? {
        return Ok(()); // already up to date
    }
    if rebase || git.is_ancestor(&ours_c, theirs)? {
        // fast-forward, or a rebase: the worktree passes through `theirs`
        risk.add_changes(dbs, &git.diff_trees(&head, theirs)?);
        if !rebase {
            return Ok(());
        }
    }
    let out = git.raw(
        &to_os([
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--allow-unrelated-histories",
            &ours_c,
            theirs,
        ]),
        false,
    )?;
    match (out.status.code(), parse_merge_tree(&out.stdout)) {
        (Some(0 | 1), Some((tree, conflicts))) => {
            risk.add_changes(dbs, &git.diff_trees(&head, &tree)?);
            risk.add_exact(dbs, &conflicts, Reason::Overwritten);
        }
        // old git without merge-tree --write-tree: every path that differs is a candidate
        _ => risk.add_changes(dbs, &git.diff_trees(&head, theirs)?),
    }
    Ok(())
}

/// `branch.<b>.rebase`, else `pull.rebase`; default merge.
fn pull_rebase_config(git: &Git) -> Result<bool, PlanError> {
    if let Some(b) = current_branch(git)?
        && let Some(v) = git.config(&format!("branch.{b}.rebase"))?
    {
        return Ok(rebase_value(&v));
    }
    Ok(git.config("pull.rebase")?.is_some_and(|v| rebase_value(&v)))
}

fn current_branch(git: &Git) -> Result<Option<String>, PlanError> {
    let out = git.raw(&to_os(["symbolic-ref", "-q", "--short", "HEAD"]), false)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty()))
}

/// The commits a pull merges: `@{upstream}`, or the given refspecs' remote-tracking refs
/// (or `FETCH_HEAD`'s merge heads).
fn pull_upstreams(
    git: &Git,
    remote: Option<&str>,
    refspecs: &[String],
) -> Result<Vec<String>, PlanError> {
    if refspecs.is_empty() {
        return Ok(vec![git.must_commit("@{upstream}")?]);
    }
    let remote = remote.unwrap_or("origin");
    let mut out = Vec::new();
    let mut missing = false;
    for spec in refspecs {
        let src = spec.trim_start_matches('+');
        let src = src.split_once(':').map_or(src, |(s, _)| s);
        let short = src.strip_prefix("refs/heads/").unwrap_or(src);
        let candidates = [format!("refs/remotes/{remote}/{short}"), src.to_owned()];
        let mut found = None;
        for c in &candidates {
            if let Some(id) = git.commit(c)? {
                found = Some(id);
                break;
            }
        }
        match found {
            Some(id) => out.push(id),
            None => missing = true,
        }
    }
    if missing {
        // the caller ran `git fetch <remote> <refspec>…`: FETCH_HEAD lists what to merge
        out.extend(fetch_head_merges(git)?);
    }
    if out.is_empty() {
        return Err(PlanError::Unplannable(format!(
            "cannot tell which commit `git pull {remote} {}` merges",
            refspecs.join(" ")
        )));
    }
    Ok(out)
}

fn fetch_head_merges(git: &Git) -> Result<Vec<String>, PlanError> {
    let path = git.text(["rev-parse", "--git-path", "FETCH_HEAD"])?;
    let Ok(text) = std::fs::read_to_string(git.dir.join(path)) else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let id = f.next()?;
            let flag = f.next()?;
            (flag != "not-for-merge" && !id.is_empty()).then(|| id.to_owned())
        })
        .collect())
}

/// The commit a rebase in progress started from.
fn rebase_orig_head(git: &Git) -> Result<Option<String>, PlanError> {
    for p in ["rebase-merge/orig-head", "rebase-apply/orig-head"] {
        let path = git.text(["rev-parse", "--git-path", p])?;
        if let Ok(id) = std::fs::read_to_string(git.dir.join(path))
            && let Some(c) = git.commit(id.trim())?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// `git clean -n` with the same flags: `Would remove <path>` lines, relative to the cwd.
fn clean(
    git: &Git,
    worktree_root: &Path,
    args: &[String],
    dbs: &DbSet,
    risk: &mut Risk,
) -> Result<(), PlanError> {
    let mut full = to_os(["-c", "core.quotePath=false", "clean", "-n"]);
    full.extend(args.iter().map(OsString::from));
    let out = String::from_utf8(git.bytes(full)?)
        .map_err(|_| PlanError::Unplannable("git clean -n printed a non-UTF-8 path".into()))?;
    let prefix = match git.text(["rev-parse", "--show-prefix"]) {
        Ok(p) => PathBuf::from(p),
        Err(_) => git
            .dir
            .strip_prefix(worktree_root)
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    for line in out.lines() {
        let Some(p) = line.strip_prefix("Would remove ") else {
            continue;
        };
        let bytes = unquote_c(p);
        let rel = bytes_to_path(&bytes);
        let Some(path) = normalize(&prefix.join(rel)) else {
            continue;
        };
        // a removed directory takes every database below it
        for db in dbs.touched_by(&path) {
            if normalize(&db).is_some_and(|n| n.starts_with(&path)) {
                risk.add(&db, Reason::Cleaned);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Once;

    fn os(argv: &str) -> Vec<OsString> {
        argv.split_whitespace().map(OsString::from).collect()
    }

    /// The planner runs git with the process environment: make it hermetic once.
    fn hermetic() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let dir =
                std::env::temp_dir().join(format!("dbguard-plan-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = dir.join("gitconfig");
            std::fs::write(&cfg, "").unwrap();
            // SAFETY: runs once, before any test of this module spawns git.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var("GIT_CONFIG_NOSYSTEM", "1");
                std::env::set_var("GIT_CONFIG_GLOBAL", &cfg);
            }
        });
    }

    struct Repo {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        root: PathBuf,
    }

    fn run_git(base: &Path, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", base.join(".gitconfig"))
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    impl Repo {
        fn new() -> Repo {
            hermetic();
            let tmp = tempfile::tempdir().unwrap();
            let base = tmp.path().canonicalize().unwrap();
            std::fs::write(base.join(".gitconfig"), "").unwrap();
            let root = base.join("work");
            run_git(&base, &base, &["init", "-q", "-b", "main", "work"]);
            let r = Repo {
                _tmp: tmp,
                base,
                root,
            };
            r.git(&["config", "user.name", "Test"]);
            r.git(&["config", "user.email", "test@example.com"]);
            r
        }

        fn git(&self, args: &[&str]) -> String {
            run_git(&self.base, &self.root, args)
        }

        fn write(&self, path: &str, content: &str) {
            let p = self.root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }

        fn commit(&self, msg: &str) {
            self.git(&["add", "-A"]);
            self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        }

        /// A bare remote `origin` next to the work tree, with main pushed, and a second clone.
        fn with_remote(&self) -> PathBuf {
            run_git(
                &self.base,
                &self.base,
                &["init", "-q", "--bare", "-b", "main", "origin.git"],
            );
            self.git(&["remote", "add", "origin", "../origin.git"]);
            self.git(&["push", "-q", "-u", "origin", "main"]);
            run_git(
                &self.base,
                &self.base,
                &["clone", "-q", "origin.git", "other"],
            );
            let other = self.base.join("other");
            run_git(&self.base, &other, &["config", "user.name", "Other"]);
            run_git(
                &self.base,
                &other,
                &["config", "user.email", "o@example.com"],
            );
            other
        }

        fn plan_in(&self, dir: &Path, argv: &str, dbs: &[&str]) -> Plan {
            let inv = parse_invocation(&os(argv), dir).unwrap();
            let dbs: Vec<PathBuf> = dbs.iter().map(PathBuf::from).collect();
            plan(&inv, &self.root, &dbs, None).unwrap()
        }

        fn plan(&self, argv: &str, dbs: &[&str]) -> Plan {
            self.plan_in(&self.root, argv, dbs)
        }
    }

    fn risks(p: &Plan) -> Vec<(String, Reason)> {
        p.at_risk
            .iter()
            .map(|a| (a.path.to_string_lossy().into_owned(), a.why))
            .collect()
    }

    fn r(path: &str, why: Reason) -> (String, Reason) {
        (path.to_owned(), why)
    }

    // ---- parse_invocation -----------------------------------------------------------------

    #[test]
    fn global_options_are_collected_in_order() {
        let inv = parse_invocation(
            &os("-C a -C b/c -c core.x=1 --git-dir=g --work-tree w --no-pager -P --literal-pathspecs checkout -q main"),
            Path::new("/start"),
        )
        .unwrap();
        assert_eq!(inv.cwd, PathBuf::from("/start/a/b/c"));
        assert_eq!(
            inv.global,
            os(
                "-C a -C b/c -c core.x=1 --git-dir=g --work-tree w --no-pager -P --literal-pathspecs"
            )
        );
        assert_eq!(inv.subcommand.as_deref(), Some("checkout"));
        assert_eq!(inv.args, os("-q main"));
        // queries drop -C (already applied) and pager flags
        assert_eq!(
            query_globals(&inv.global),
            os("-c core.x=1 --git-dir=g --work-tree w --literal-pathspecs")
        );
    }

    #[test]
    fn absolute_c_replaces_and_empty_c_is_ignored() {
        let argv = vec![
            OsString::from("-C"),
            OsString::from("/x"),
            OsString::from("-C"),
            OsString::from(""),
            OsString::from("-C"),
            OsString::from("y"),
            OsString::from("status"),
        ];
        let inv = parse_invocation(&argv, Path::new("/start")).unwrap();
        assert_eq!(inv.cwd, PathBuf::from("/x/y"));
    }

    #[test]
    fn invalid_global_options_are_errors() {
        for argv in ["-C", "-c", "--git-dir", "--frobnicate status"] {
            assert!(
                matches!(
                    parse_invocation(&os(argv), Path::new("/")),
                    Err(PlanError::InvalidArgs(_))
                ),
                "{argv}"
            );
        }
    }

    #[test]
    fn version_help_and_bare_git_are_not_subcommands_that_touch_files() {
        let inv = parse_invocation(&os("--version"), Path::new("/")).unwrap();
        assert_eq!(inv.subcommand.as_deref(), Some("version"));
        let inv = parse_invocation(&os("--exec-path"), Path::new("/")).unwrap();
        assert_eq!(inv.subcommand, None);
        let inv = parse_invocation(&[], Path::new("/")).unwrap();
        assert_eq!(inv.subcommand, None);
    }

    #[test]
    fn split_cmdline_handles_quotes_and_escapes() {
        assert_eq!(
            split_cmdline(r#"log --format='%h %s' "a b" c\ d"#).unwrap(),
            vec!["log", "--format=%h %s", "a b", "c d"]
        );
        assert!(split_cmdline("checkout 'oops").is_err());
    }

    #[test]
    fn aliases_expand_recursively_with_c_options() {
        let repo = Repo::new();
        repo.git(&["config", "alias.co", "checkout -q"]);
        repo.git(&["config", "alias.com", "co main"]);
        let inv = parse_invocation(&os("com --force"), &repo.root).unwrap();
        assert_eq!(inv.subcommand.as_deref(), Some("checkout"));
        assert_eq!(inv.args, os("-q main --force"));
        assert_eq!(inv.aliases, vec!["com", "co"]);

        // an alias given with -c on the command line, with global options inside it
        let argv: Vec<OsString> = ["-c", "alias.sw=-c x.y=1 switch", "sw", "dev"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let inv = parse_invocation(&argv, &repo.root).unwrap();
        assert_eq!(inv.subcommand.as_deref(), Some("switch"));
        assert_eq!(inv.args, os("dev"));
        let want: Vec<OsString> = ["-c", "alias.sw=-c x.y=1 switch", "-c", "x.y=1"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(inv.global, want);

        // builtins win over aliases, as in git
        repo.git(&["config", "alias.status", "checkout main"]);
        let inv = parse_invocation(&os("status"), &repo.root).unwrap();
        assert_eq!(inv.subcommand.as_deref(), Some("status"));
        assert!(inv.aliases.is_empty());

        // unknown names stay as they are (external commands)
        let inv = parse_invocation(&os("frob x"), &repo.root).unwrap();
        assert_eq!(inv.subcommand.as_deref(), Some("frob"));
    }

    #[test]
    fn alias_loops_and_env_changing_aliases_are_errors() {
        let repo = Repo::new();
        repo.git(&["config", "alias.a", "b"]);
        repo.git(&["config", "alias.b", "a -x"]);
        assert!(matches!(
            parse_invocation(&os("a"), &repo.root),
            Err(PlanError::AliasLoop(_))
        ));
        repo.git(&["config", "alias.elsewhere", "-C /tmp checkout"]);
        assert!(matches!(
            parse_invocation(&os("elsewhere"), &repo.root),
            Err(PlanError::InvalidArgs(_))
        ));
    }

    #[test]
    fn shell_alias_falls_back_to_every_database() {
        let repo = Repo::new();
        repo.write("a.db", "a");
        repo.commit("one");
        repo.git(&["config", "alias.nuke", "!git checkout . && git clean -fdx"]);
        let inv = parse_invocation(&os("nuke"), &repo.root).unwrap();
        assert_eq!(
            inv.shell_alias.as_deref(),
            Some("git checkout . && git clean -fdx")
        );
        let p = plan(
            &inv,
            &repo.root,
            &[PathBuf::from("a.db"), PathBuf::from("b/c.db")],
            None,
        )
        .unwrap();
        assert_eq!(
            p.operation,
            Operation::Unknown {
                subcommand: "nuke".into()
            }
        );
        assert_eq!(
            risks(&p),
            vec![r("a.db", Reason::Fallback), r("b/c.db", Reason::Fallback)]
        );
        assert!(p.fallback_reason.unwrap().contains("shell alias"));
    }

    // ---- option parsing ---------------------------------------------------------------------

    #[test]
    fn parse_opts_handles_clusters_abbreviations_and_negation() {
        let args: Vec<String> = [
            "-fb",
            "new",
            "--det",
            "--no-guess",
            "--conflict=diff3",
            "start",
            "--",
            "x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = parse_opts("checkout", &args, CHECKOUT).unwrap();
        assert!(p.has("force"));
        assert_eq!(p.value("b"), Some("new"));
        assert!(p.has("detach"));
        assert_eq!(p.flag(&["guess"]), Some(false));
        assert_eq!(p.value("conflict"), Some("diff3"));
        assert_eq!(p.before, vec!["start"]);
        assert_eq!(p.after, Some(vec!["x".to_owned()]));
        let bad: Vec<String> = vec!["--o".into()];
        assert!(
            parse_opts("checkout", &bad, CHECKOUT).is_err(),
            "ambiguous --o"
        );
        let bad: Vec<String> = vec!["--zzz".into()];
        assert!(parse_opts("checkout", &bad, CHECKOUT).is_err());
    }

    #[test]
    fn parse_pull_and_fetch_args() {
        let inv = parse_invocation(
            &os("-c x=1 pull --rebase=false -q upstream main dev"),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                remote: Some("upstream".into()),
                refspecs: vec!["main".into(), "dev".into()],
                rebase: Some(false),
                all: false,
            }
        );
        assert_eq!(
            pull_fetch_args(&inv),
            os("-c x=1 fetch --end-of-options upstream main dev")
        );
        let inv = parse_invocation(&os("pull -r"), Path::new("/w")).unwrap();
        assert!(matches!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                rebase: Some(true),
                ..
            }
        ));
        assert_eq!(pull_fetch_args(&inv), os("fetch"));
        let inv = parse_invocation(&os("pull --no-rebase --all"), Path::new("/w")).unwrap();
        assert!(matches!(
            parse_pull(&inv.args).unwrap(),
            Operation::Pull {
                rebase: Some(false),
                all: true,
                ..
            }
        ));
        assert_eq!(pull_fetch_args(&inv), os("fetch --all"));
        let inv = parse_invocation(&os("status"), Path::new("/w")).unwrap();
        assert!(pull_fetch_args(&inv).is_empty());
    }

    #[test]
    fn unquote_and_normalize() {
        assert_eq!(
            unquote_c(r#""\303\251 a\"b\\c\t""#),
            "é a\"b\\c\t".as_bytes()
        );
        assert_eq!(unquote_c("plain name"), b"plain name");
        assert_eq!(
            normalize(Path::new("a/./b/../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(normalize(Path::new("../x")), None);
    }

    // ---- planning on real repositories -------------------------------------------------------

    #[test]
    fn checkout_of_a_branch_tracking_a_locally_ignored_database() {
        let repo = Repo::new();
        repo.write(".gitignore", "*.db\n");
        repo.write("README", "hi\n");
        repo.commit("main");
        repo.git(&["checkout", "-q", "-b", "data"]);
        repo.write("data/app.db", "tracked on data\n");
        repo.git(&["add", "-f", "data/app.db"]);
        repo.commit("data tracks the db");
        repo.git(&["checkout", "-q", "main"]);
        // the local, ignored database that `git checkout data` silently replaces
        repo.write("data/app.db", "precious local rows\n");
        repo.write("other.db", "unrelated\n");
        let dbs = ["data/app.db", "other.db"];

        let p = repo.plan("checkout data", &dbs);
        assert_eq!(p.fallback_reason, None);
        assert!(matches!(&p.operation, Operation::Checkout { target: Some(t), .. } if t == "data"));
        assert_eq!(risks(&p), vec![r("data/app.db", Reason::Overwritten)]);
        assert_eq!(
            risks(&repo.plan("switch data", &dbs)),
            vec![r("data/app.db", Reason::Overwritten)]
        );
        assert_eq!(
            risks(&repo.plan("checkout --detach data", &dbs)),
            vec![r("data/app.db", Reason::Overwritten)]
        );
        assert_eq!(
            risks(&repo.plan("checkout -b new data", &dbs)),
            vec![r("data/app.db", Reason::Overwritten)]
        );
        // creating a branch at HEAD touches nothing
        assert!(repo.plan("checkout -b new", &dbs).is_empty());
        assert!(repo.plan("switch -c new", &dbs).is_empty());

        // from data back to main the tracked database is deleted; `-` is the previous branch
        std::fs::remove_file(repo.root.join("data/app.db")).unwrap();
        repo.git(&["checkout", "-q", "data"]);
        assert_eq!(
            risks(&repo.plan("checkout main", &dbs)),
            vec![r("data/app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("checkout -", &dbs)),
            vec![r("data/app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("switch -", &dbs)),
            vec![r("data/app.db", Reason::Deleted)]
        );
        // switch --orphan empties the tree
        assert_eq!(
            risks(&repo.plan("switch --orphan fresh", &dbs)),
            vec![r("data/app.db", Reason::Deleted)]
        );
    }

    #[test]
    fn unrelated_checkout_touches_no_database() {
        let repo = Repo::new();
        repo.write("app.db", "v1");
        repo.write("README", "one\n");
        repo.commit("one");
        repo.git(&["checkout", "-q", "-b", "docs"]);
        repo.write("README", "two\n");
        repo.commit("docs");
        repo.git(&["checkout", "-q", "main"]);
        repo.write("app.db", "locally modified");
        let p = repo.plan("checkout docs", &["app.db"]);
        assert_eq!(p.fallback_reason, None);
        assert!(p.is_empty(), "{p:?}");
        // status, log, commit… are Other and plan nothing
        for argv in ["status", "log --oneline", "commit -m x", "fetch", "push"] {
            let p = repo.plan(argv, &["app.db"]);
            assert_eq!(p.operation, Operation::Other, "{argv}");
            assert!(p.is_empty());
        }
        // but checkout -f throws the local modification away
        assert_eq!(
            risks(&repo.plan("checkout -f docs", &["app.db"])),
            vec![r("app.db", Reason::Discarded)]
        );
    }

    #[test]
    fn checkout_paths_discards_modified_tracked_databases() {
        let repo = Repo::new();
        repo.write("sub dir/a.db", "v1");
        repo.write("sub dir/b.db", "v1");
        repo.write("c.db", "v1");
        repo.commit("one");
        repo.write("sub dir/a.db", "v2");
        repo.write("c.db", "v2");
        let dbs = ["sub dir/a.db", "sub dir/b.db", "c.db"];
        let p = repo.plan("checkout -- .", &dbs);
        assert_eq!(
            risks(&p),
            vec![
                r("c.db", Reason::Discarded),
                r("sub dir/a.db", Reason::Discarded)
            ]
        );
        // a pathspec relative to -C, without `--`
        let argv: Vec<OsString> = ["-C", "sub dir", "checkout", "a.db"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let inv = parse_invocation(&argv, &repo.root).unwrap();
        let p = plan(&inv, &repo.root, &dbs.map(PathBuf::from), None).unwrap();
        assert!(
            matches!(&p.operation, Operation::Checkout { target: None, paths, .. } if paths == &["a.db"])
        );
        assert_eq!(risks(&p), vec![r("sub dir/a.db", Reason::Discarded)]);
        // from a revision
        repo.commit("two");
        let p = repo.plan("checkout HEAD~1 -- c.db", &dbs);
        assert_eq!(risks(&p), vec![r("c.db", Reason::Overwritten)]);
    }

    #[test]
    fn reset_hard_to_a_fetched_remote_branch() {
        let repo = Repo::new();
        repo.write("app.db", "v1");
        repo.write("cache.db", "v1");
        repo.write("notes.txt", "x");
        repo.commit("one");
        let other = repo.with_remote();
        std::fs::write(other.join("app.db"), "remote v2").unwrap();
        run_git(&repo.base, &other, &["commit", "-qam", "remote change"]);
        run_git(&repo.base, &other, &["push", "-q"]);
        repo.git(&["fetch", "-q"]);
        repo.write("cache.db", "local change");
        let dbs = ["app.db", "cache.db"];
        let p = repo.plan("reset --hard origin/main", &dbs);
        assert_eq!(p.fallback_reason, None);
        assert!(matches!(
            p.operation,
            Operation::Reset {
                mode: ResetMode::Hard,
                ..
            }
        ));
        assert_eq!(
            risks(&p),
            vec![
                r("app.db", Reason::Overwritten),
                r("cache.db", Reason::Discarded)
            ]
        );
        // --keep keeps local changes; soft and mixed touch no file
        assert_eq!(
            risks(&repo.plan("reset --keep origin/main", &dbs)),
            vec![r("app.db", Reason::Overwritten)]
        );
        assert!(repo.plan("reset --soft origin/main", &dbs).is_empty());
        assert!(repo.plan("reset origin/main", &dbs).is_empty());
        assert!(repo.plan("reset -- app.db", &dbs).is_empty());
        assert_eq!(
            risks(&repo.plan("reset --hard", &dbs)),
            vec![r("cache.db", Reason::Discarded)]
        );
    }

    #[test]
    fn pull_of_a_commit_that_untracks_the_database() {
        let repo = Repo::new();
        repo.write("app.db", "v1");
        repo.write("other.db", "v1");
        repo.commit("one");
        let other = repo.with_remote();
        run_git(&repo.base, &other, &["rm", "-q", "--cached", "app.db"]);
        std::fs::write(other.join(".gitignore"), "*.db\n").unwrap();
        run_git(&repo.base, &other, &["add", ".gitignore"]);
        run_git(
            &repo.base,
            &other,
            &["commit", "-qm", "stop tracking the db"],
        );
        run_git(&repo.base, &other, &["push", "-q"]);

        let dbs = ["app.db", "other.db"];
        let inv = parse_invocation(&os("pull"), &repo.root).unwrap();
        let fetch: Vec<String> = pull_fetch_args(&inv)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let fetch: Vec<&str> = fetch.iter().map(String::as_str).collect();
        repo.git(&fetch);
        let p = plan(&inv, &repo.root, &dbs.map(PathBuf::from), None).unwrap();
        assert_eq!(p.fallback_reason, None);
        assert_eq!(risks(&p), vec![r("app.db", Reason::Deleted)]);
        // explicit remote and branch, and rebase
        assert_eq!(
            risks(&repo.plan("pull origin main", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("pull --rebase", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
        // merging the fetched branch, and rebasing onto it, plan the same
        assert_eq!(
            risks(&repo.plan("merge origin/main", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("merge", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("rebase origin/main", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
        assert_eq!(
            risks(&repo.plan("rebase", &dbs)),
            vec![r("app.db", Reason::Deleted)]
        );
    }

    #[test]
    fn diverged_merge_uses_the_merge_result() {
        let repo = Repo::new();
        repo.write("a.db", "base");
        repo.write("b.db", "base");
        repo.write("c.db", "base");
        repo.commit("base");
        repo.git(&["checkout", "-q", "-b", "side"]);
        repo.write("a.db", "side");
        repo.write("c.db", "side");
        repo.commit("side");
        repo.git(&["checkout", "-q", "main"]);
        repo.write("b.db", "main");
        repo.write("c.db", "main");
        repo.commit("main");
        // a.db: only side changed → overwritten; b.db: only main changed → untouched;
        // c.db: both changed → conflict → overwritten (conflict content)
        let dbs = ["a.db", "b.db", "c.db"];
        let p = repo.plan("merge side", &dbs);
        assert_eq!(p.fallback_reason, None);
        assert_eq!(
            risks(&p),
            vec![
                r("a.db", Reason::Overwritten),
                r("c.db", Reason::Overwritten)
            ]
        );
        // a rebase passes through `side`'s tree: b.db is rewritten too
        let p = repo.plan("rebase side", &dbs);
        assert_eq!(
            risks(&p),
            vec![
                r("a.db", Reason::Overwritten),
                r("b.db", Reason::Overwritten),
                r("c.db", Reason::Overwritten)
            ]
        );
        // merging an ancestor touches nothing
        assert!(repo.plan("merge main~1", &dbs).is_empty());
        // abort throws away modified tracked databases
        repo.write("b.db", "dirty");
        assert_eq!(
            risks(&repo.plan("merge --abort", &dbs)),
            vec![r("b.db", Reason::Discarded)]
        );
        assert_eq!(repo.plan("rebase --continue", &dbs).at_risk.len(), 3);
        assert!(
            repo.plan("rebase --continue", &dbs)
                .fallback_reason
                .is_some()
        );
    }

    #[test]
    fn clean_fdx_with_an_ignored_database_in_a_directory_with_spaces() {
        let repo = Repo::new();
        repo.write(".gitignore", "my data/\n");
        repo.write("tracked.db", "t");
        repo.commit("one");
        repo.write("my data/deep/x.db", "ignored");
        repo.write("scratch/é.db", "untracked");
        repo.write("top.db", "untracked");
        let dbs = ["my data/deep/x.db", "scratch/é.db", "top.db", "tracked.db"];
        let p = repo.plan("clean -fdx", &dbs);
        assert_eq!(p.fallback_reason, None);
        assert_eq!(
            risks(&p),
            vec![
                r("my data/deep/x.db", Reason::Cleaned),
                r("scratch/é.db", Reason::Cleaned),
                r("top.db", Reason::Cleaned)
            ]
        );
        // without -x ignored files stay; without -d untracked directories stay
        assert_eq!(
            risks(&repo.plan("clean -fd", &dbs)),
            vec![
                r("scratch/é.db", Reason::Cleaned),
                r("top.db", Reason::Cleaned)
            ]
        );
        assert_eq!(
            risks(&repo.plan("clean -f", &dbs)),
            vec![r("top.db", Reason::Cleaned)]
        );
        assert_eq!(risks(&repo.plan("clean -fX", &dbs)), vec![]);
        assert_eq!(
            risks(&repo.plan("clean -fdX", &dbs)),
            vec![r("my data/deep/x.db", Reason::Cleaned)]
        );
        // from a subdirectory, with a pathspec
        let p = repo.plan_in(&repo.root.join("scratch"), "clean -f -- .", &dbs);
        assert_eq!(risks(&p), vec![r("scratch/é.db", Reason::Cleaned)]);
        // interactive clean is planned like forced clean
        assert_eq!(
            risks(&repo.plan("clean -i", &dbs)),
            vec![r("top.db", Reason::Cleaned)]
        );
    }

    #[test]
    fn stash_push_with_untracked_and_all() {
        let repo = Repo::new();
        repo.write(".gitignore", "*.ignored.db\n");
        repo.write("t.db", "v1");
        repo.write("clean.db", "v1");
        repo.commit("one");
        repo.write("t.db", "v2");
        repo.write("sub/u.db", "untracked");
        repo.write("i.ignored.db", "ignored");
        let dbs = ["clean.db", "i.ignored.db", "sub/u.db", "t.db"];
        assert_eq!(
            risks(&repo.plan("stash", &dbs)),
            vec![r("t.db", Reason::Stashed)]
        );
        assert_eq!(
            risks(&repo.plan("stash -u", &dbs)),
            vec![r("sub/u.db", Reason::Stashed), r("t.db", Reason::Stashed)]
        );
        assert_eq!(
            risks(&repo.plan("stash push --all", &dbs)),
            vec![
                r("i.ignored.db", Reason::Stashed),
                r("sub/u.db", Reason::Stashed),
                r("t.db", Reason::Stashed)
            ]
        );
        assert_eq!(
            risks(&repo.plan("stash push -u -- sub", &dbs)),
            vec![r("sub/u.db", Reason::Stashed)]
        );
        assert!(repo.plan("stash list", &dbs).is_empty());

        // pop writes what the stash holds, untracked files included
        repo.git(&["stash", "push", "-q", "-u"]);
        repo.write("sub/u.db", "recreated meanwhile");
        let p = repo.plan("stash pop", &dbs);
        assert_eq!(p.fallback_reason, None);
        assert_eq!(
            risks(&p),
            vec![
                r("sub/u.db", Reason::Overwritten),
                r("t.db", Reason::Overwritten)
            ]
        );
        assert_eq!(risks(&repo.plan("stash apply 0", &dbs)), risks(&p));
        assert!(repo.plan("stash apply 7", &dbs).fallback_reason.is_some());
    }

    #[test]
    fn rm_removes_tracked_databases_under_the_pathspec() {
        let repo = Repo::new();
        repo.write("data/a.db", "a");
        repo.write("data/b.db", "b");
        repo.write("c.db", "c");
        repo.commit("one");
        repo.write("data/new.db", "untracked");
        let dbs = ["c.db", "data/a.db", "data/b.db", "data/new.db"];
        assert_eq!(
            risks(&repo.plan("rm -r data", &dbs)),
            vec![
                r("data/a.db", Reason::Removed),
                r("data/b.db", Reason::Removed)
            ]
        );
        assert_eq!(
            risks(&repo.plan("rm -q -- c.db", &dbs)),
            vec![r("c.db", Reason::Removed)]
        );
        assert_eq!(
            risks(&repo.plan("rm data/*.db", &dbs)),
            vec![
                r("data/a.db", Reason::Removed),
                r("data/b.db", Reason::Removed)
            ]
        );
        assert!(repo.plan("rm --cached c.db", &dbs).is_empty());
        assert!(repo.plan("rm -n c.db", &dbs).is_empty());
    }

    #[test]
    fn restore_worktree_staged_and_source() {
        let repo = Repo::new();
        repo.write("a.db", "v1");
        repo.write("b.db", "v1");
        repo.commit("one");
        repo.write("a.db", "v2");
        repo.commit("two");
        repo.write("a.db", "v3 local");
        let dbs = ["a.db", "b.db"];
        assert_eq!(
            risks(&repo.plan("restore a.db b.db", &dbs)),
            vec![r("a.db", Reason::Discarded)]
        );
        assert_eq!(
            risks(&repo.plan("restore .", &dbs)),
            vec![r("a.db", Reason::Discarded)]
        );
        assert!(repo.plan("restore --staged a.db", &dbs).is_empty());
        assert_eq!(
            risks(&repo.plan("restore -SW a.db", &dbs)),
            vec![r("a.db", Reason::Overwritten)]
        );
        assert_eq!(
            risks(&repo.plan("restore --source HEAD~1 -- .", &dbs)),
            vec![r("a.db", Reason::Overwritten)]
        );
        // a database the source lacks is deleted by restore (no overlay)
        repo.write("c.db", "new");
        repo.commit("three");
        assert_eq!(
            risks(&repo.plan("restore -s HEAD~1 .", &["a.db", "c.db"])),
            vec![r("a.db", Reason::Overwritten), r("c.db", Reason::Deleted)]
        );
        // checkout <rev> -- . is overlay: c.db stays
        assert_eq!(
            risks(&repo.plan("checkout HEAD~1 -- .", &["a.db", "c.db"])),
            vec![r("a.db", Reason::Overwritten)]
        );
    }

    #[test]
    fn unknown_revisions_fall_back_without_panicking() {
        let repo = Repo::new();
        repo.write("a.db", "v1");
        repo.commit("one");
        let dbs = ["a.db", "b/c.db"];
        for argv in [
            "reset --hard nosuchrev",
            "checkout nosuchrev",
            "checkout --detach nosuchrev",
            "switch nosuchrev",
            "merge nosuchrev",
            "rebase nosuchrev",
            "pull",
            "checkout --frobnicate main",
            "stash pop",
            "restore --source nosuchrev a.db",
        ] {
            let p = repo.plan(argv, &dbs);
            assert_eq!(
                risks(&p),
                vec![r("a.db", Reason::Fallback), r("b/c.db", Reason::Fallback)],
                "{argv}: {p:?}"
            );
            assert!(
                p.fallback_reason.as_deref().is_some_and(|s| !s.is_empty()),
                "{argv}"
            );
        }
        // no databases, nothing to do; bad database paths are an error
        assert!(repo.plan("reset --hard nosuchrev", &[]).at_risk.is_empty());
        let inv = parse_invocation(&os("checkout main"), &repo.root).unwrap();
        assert!(matches!(
            plan(&inv, &repo.root, &[PathBuf::from("../escape.db")], None),
            Err(PlanError::InvalidPath(_))
        ));
    }

    #[test]
    fn unborn_head_checkout_overwrites_untracked_databases() {
        let repo = Repo::new();
        let other = repo.base.join("seed");
        run_git(
            &repo.base,
            &repo.base,
            &["init", "-q", "-b", "main", "seed"],
        );
        std::fs::write(other.join("app.db"), "seed").unwrap();
        run_git(&repo.base, &other, &["add", "."]);
        run_git(
            &repo.base,
            &other,
            &[
                "-c",
                "user.name=x",
                "-c",
                "user.email=x@y",
                "commit",
                "-qm",
                "seed",
            ],
        );
        repo.git(&["fetch", "-q", "../seed", "main:refs/remotes/seed/main"]);
        repo.write("app.db", "local before first checkout");
        assert_eq!(
            risks(&repo.plan("reset --hard seed/main", &["app.db"])),
            vec![r("app.db", Reason::Overwritten)]
        );
        assert_eq!(
            risks(&repo.plan("checkout seed/main", &["app.db"])),
            vec![r("app.db", Reason::Overwritten)]
        );
    }
}
