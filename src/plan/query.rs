//! Running git for a query, and parsing what it prints.
//!
//! Queries run with a fixed locale and optional locks off, in the invocation's effective
//! directory with its global options, so they see the repository exactly as the user's
//! command will.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::databases::DbSet;
use super::invocation::GitInvocation;
use super::{PlanError, RiskReason};
use crate::git::{FSMONITOR_OFF, GitRunner};

// ---------------------------------------------------------------------------------------------
// Starting git

/// Start a git query (see [`GitRunner::query`]: fixed locale, optional locks off, no
/// prompts, no fsmonitor); `internal` also drops the user's pathspec-magic variables
/// (our `:(top,literal)` specs).
pub(super) fn git_raw(
    runner: &GitRunner,
    dir: &Path,
    args: &[OsString],
    internal: bool,
) -> Result<Output, PlanError> {
    let mut command = if internal {
        runner.internal_query(dir)
    } else {
        runner.query(dir)
    };
    command
        .args(args)
        .output()
        .map_err(|source| PlanError::Spawn {
            dir: dir.to_owned(),
            source,
        })
}

/// The stdout of a successful run, else [`PlanError::Git`] with git's stderr.
pub(super) fn check(dir: &Path, args: &[OsString], out: Output) -> Result<Vec<u8>, PlanError> {
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
pub(super) struct Git {
    runner: GitRunner,
    /// The invocation's effective directory (every `-C` applied).
    pub(super) dir: PathBuf,
    /// Global options for queries that take the user's pathspecs.
    user: Vec<OsString>,
    /// Global options for queries with our own `:(top,literal)` pathspecs.
    internal: Vec<OsString>,
    /// Revisions already peeled: refs do not move while git waits for dbguard, and the
    /// planner asks for the same one more than once (each ask is a git process).
    peeled: std::cell::RefCell<std::collections::HashMap<(String, String), Option<String>>>,
}

/// Arguments as owned `OsString`s.
pub(super) fn to_os<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

impl Git {
    pub(super) fn new(inv: &GitInvocation) -> Git {
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
            runner: inv.runner.clone(),
            dir: inv.cwd.clone(),
            user,
            internal,
            peeled: Default::default(),
        }
    }

    pub(super) fn raw(&self, args: &[OsString], internal: bool) -> Result<Output, PlanError> {
        let mut full = if internal {
            self.internal.clone()
        } else {
            self.user.clone()
        };
        // After the user's `-c` options, so that none of them turns fsmonitor back on.
        full.extend(FSMONITOR_OFF.iter().map(OsString::from));
        full.extend(args.iter().cloned());
        git_raw(&self.runner, &self.dir, &full, internal)
    }

    /// stdout of a successful query.
    pub(super) fn bytes<I, S>(&self, args: I) -> Result<Vec<u8>, PlanError>
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

    pub(super) fn text<I, S>(&self, args: I) -> Result<String, PlanError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Ok(String::from_utf8_lossy(&self.bytes(args)?)
            .trim()
            .to_owned())
    }

    /// Exit 0 → true, exit 1 → false, anything else → error.
    pub(super) fn test<I, S>(&self, args: I) -> Result<bool, PlanError>
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
    pub(super) fn config(&self, key: &str) -> Result<Option<String>, PlanError> {
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
    pub(super) fn commit(&self, rev: &str) -> Result<Option<String>, PlanError> {
        self.peel(rev, "commit")
    }

    pub(super) fn peel(&self, rev: &str, kind: &str) -> Result<Option<String>, PlanError> {
        if rev.starts_with('-') || rev.is_empty() {
            return Ok(None);
        }
        let key = (rev.to_owned(), kind.to_owned());
        if let Some(known) = self.peeled.borrow().get(&key) {
            return Ok(known.clone());
        }
        let args = to_os([
            "rev-parse".to_owned(),
            "--verify".to_owned(),
            "-q".to_owned(),
            format!("{rev}^{{{kind}}}"),
        ]);
        let out = self.raw(&args, false)?;
        let peeled = match out.status.code() {
            Some(0) => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
            Some(1) => None,
            _ => return check(&self.dir, &args, out).map(|_| None),
        };
        self.peeled.borrow_mut().insert(key, peeled.clone());
        Ok(peeled)
    }

    /// A commit id or an error naming the revision.
    pub(super) fn must_commit(&self, rev: &str) -> Result<String, PlanError> {
        self.commit(rev)?.ok_or_else(|| {
            PlanError::Unplannable(format!("cannot resolve revision '{rev}' to a commit"))
        })
    }

    /// The commit `git checkout <name>` and `git switch <name>` go to: the branch
    /// `refs/heads/<name>` when there is one, which they prefer to a tag of the same name
    /// (`parse_branchname_arg` reads the branch ref after resolving the name), while
    /// revision syntax prefers the tag; else `<name>` as a revision (`HEAD~2`, a commit
    /// id, a tag). A name with revision syntax in it (`main~1`) is resolved as a whole.
    /// `-` (already `@{-1}`) and `@{-N}` name the N-th last branch checked out: git reads
    /// its name from HEAD's reflog and then prefers the branch in the same way, as
    /// `check-ref-format --branch` expands it (a revision would again take the tag).
    pub(super) fn must_checkout_commit(&self, name: &str) -> Result<String, PlanError> {
        let previous;
        let name = if name.starts_with("@{-") && name.ends_with('}') {
            previous = self.text(["check-ref-format", "--branch", name])?;
            previous.as_str()
        } else {
            name
        };
        let plain_name = name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-".contains(&byte));
        if plain_name && let Some(branch) = self.commit(&format!("refs/heads/{name}"))? {
            return Ok(branch);
        }
        self.must_commit(name)
    }

    pub(super) fn must_tree(&self, rev: &str) -> Result<String, PlanError> {
        self.peel(rev, "tree")?
            .ok_or_else(|| PlanError::Unplannable(format!("cannot resolve '{rev}' to a tree")))
    }

    /// HEAD's tree, or the empty tree when HEAD is unborn.
    pub(super) fn head_tree(&self) -> Result<String, PlanError> {
        match self.peel("HEAD", "tree")? {
            Some(t) => Ok(t),
            None => self.empty_tree(),
        }
    }

    pub(super) fn empty_tree(&self) -> Result<String, PlanError> {
        self.text(["hash-object", "-t", "tree", "/dev/null"])
    }

    pub(super) fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, PlanError> {
        self.test(["merge-base", "--is-ancestor", a, b])
    }

    /// `diff-tree` between two tree-ishes: path → Overwritten / Deleted (absent from `to`).
    pub(super) fn diff_trees(&self, from: &str, to: &str) -> Result<Changes, PlanError> {
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
                Some(RiskReason::Deleted)
            } else {
                Some(RiskReason::Overwritten)
            }
        }))
    }

    /// Tracked paths whose index or worktree differs from HEAD (`X`/`Y` of porcelain status).
    pub(super) fn modified_tracked(
        &self,
        pathspec: &[String],
    ) -> Result<Vec<StatusEntry>, PlanError> {
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
    pub(super) fn ls_files(
        &self,
        extra: &[&str],
        pathspec: &[String],
    ) -> Result<Vec<PathBuf>, PlanError> {
        let mut args = to_os(["ls-files", "-z", "--full-name"]);
        args.extend(extra.iter().map(OsString::from));
        args.push("--".into());
        args.extend(pathspec.iter().map(OsString::from));
        Ok(split_z(&self.bytes(args)?).map(bytes_to_path).collect())
    }

    /// Untracked databases (ignored ones too when `ignored`) under the user's pathspec
    /// (every database when the pathspec is empty).
    pub(super) fn untracked(
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

    /// The current branch's short name, `None` when HEAD is detached.
    pub(super) fn current_branch(&self) -> Result<Option<String>, PlanError> {
        let out = self.raw(&to_os(["symbolic-ref", "-q", "--short", "HEAD"]), false)?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    /// The merge heads `git fetch` wrote to `FETCH_HEAD` (lines not marked `not-for-merge`).
    pub(super) fn fetch_head_merges(&self) -> Result<Vec<String>, PlanError> {
        let path = self.text(["rev-parse", "--git-path", "FETCH_HEAD"])?;
        let Ok(text) = std::fs::read_to_string(self.dir.join(path)) else {
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
    pub(super) fn rebase_orig_head(&self) -> Result<Option<String>, PlanError> {
        for p in ["rebase-merge/orig-head", "rebase-apply/orig-head"] {
            let path = self.text(["rev-parse", "--git-path", p])?;
            if let Ok(id) = std::fs::read_to_string(self.dir.join(path))
                && let Some(c) = self.commit(id.trim())?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// The user's global options minus those already applied (`-C`) or irrelevant to queries (pager).
pub(super) fn query_globals(global: &[OsString]) -> Vec<OsString> {
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
// Parsing what git prints

type Changes = Vec<(PathBuf, RiskReason)>;

pub(super) fn split_z(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|b| *b == 0).filter(|s| !s.is_empty())
}

#[cfg(unix)]
pub(super) fn bytes_to_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(OsStr::from_bytes(b))
}

#[cfg(not(unix))]
pub(super) fn bytes_to_path(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// `--name-status -z` output: `S\0path\0` records (renames/copies carry two paths).
pub(super) fn parse_name_status(out: &[u8], map: impl Fn(&str) -> Option<RiskReason>) -> Changes {
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
                changes.push((bytes_to_path(path), RiskReason::Deleted));
                if reason.is_some() {
                    changes.push((bytes_to_path(new), RiskReason::Overwritten));
                }
            }
        } else if let Some(r) = reason {
            changes.push((bytes_to_path(path), r));
        }
    }
    changes
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatusEntry {
    /// Index status (`' '`: the index matches HEAD).
    pub(super) x: u8,
    /// Worktree status.
    pub(super) y: u8,
    pub(super) path: PathBuf,
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
pub(super) fn parse_merge_tree(out: &[u8]) -> Option<(String, Vec<PathBuf>)> {
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
pub(super) fn unquote_c(s: &str) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_c_undoes_git_quoting() {
        assert_eq!(
            unquote_c(r#""\303\251 a\"b\\c\t""#),
            "é a\"b\\c\t".as_bytes()
        );
        assert_eq!(unquote_c("plain name"), b"plain name");
    }
}
