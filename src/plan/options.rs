//! A small model of git's parse-options, and the options of each subcommand the planner
//! models: clusters (`-fb name`), abbreviations (`--det`), `--no-` negation, `--` and
//! `--end-of-options`, as git parses them. An option missing from a table makes the
//! command unplannable (a fallback plan), never misread.

use std::ffi::OsString;

use super::PlanError;

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    No,
    Req,
    /// Only attached: `--opt=v`, `-Sv`.
    Opt,
}

/// One option of a subcommand: its canonical name, its spellings, its value.
#[derive(Clone, Copy)]
pub(super) struct Spec {
    pub(super) name: &'static str,
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

/// The options and positional arguments of one command line, as parsed against a table.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// (canonical name, negated, value) in order.
    pub(super) hits: Vec<(&'static str, bool, Option<String>)>,
    /// Positional arguments before `--`.
    pub(super) before: Vec<String>,
    /// Arguments after `--`, `None` when there was no `--`.
    pub(super) after: Option<Vec<String>>,
}

impl Parsed {
    /// The last occurrence of `name` (or of any of `names`): `Some(true)` set, `Some(false)` negated.
    pub(super) fn flag(&self, names: &[&str]) -> Option<bool> {
        self.hits
            .iter()
            .rev()
            .find(|(n, _, _)| names.contains(n))
            .map(|(_, neg, _)| !neg)
    }

    /// The last of `names` given (and not negated): for options that override each other.
    pub(super) fn last_of(&self, names: &[&str]) -> Option<&'static str> {
        self.hits
            .iter()
            .rev()
            .find(|(n, neg, _)| !neg && names.contains(n))
            .map(|(n, _, _)| *n)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.flag(&[name]) == Some(true)
    }

    pub(super) fn value(&self, name: &str) -> Option<&str> {
        self.hits
            .iter()
            .rev()
            .find(|(n, neg, _)| *n == name && !neg)
            .and_then(|(_, _, v)| v.as_deref())
    }

    /// Last value of `name`, also when given as a bare flag (`Some(None)`), `None` if negated/absent.
    pub(super) fn opt_value(&self, name: &str) -> Option<Option<&str>> {
        let (_, neg, v) = self.hits.iter().rev().find(|(n, _, _)| *n == name)?;
        if *neg { None } else { Some(v.as_deref()) }
    }

    /// Positionals before and after `--` together.
    pub(super) fn all_positional(&self) -> Vec<String> {
        let mut v = self.before.clone();
        v.extend(self.after.clone().unwrap_or_default());
        v
    }
}

/// The command is understood but this part of it is not: a fallback plan.
pub(super) fn unsupported(cmd: &str, what: impl std::fmt::Display) -> PlanError {
    PlanError::Unplannable(format!("git {cmd}: {what}"))
}

/// The arguments as UTF-8 (the option tables and revisions are text).
pub(super) fn utf8_args(cmd: &str, args: &[OsString]) -> Result<Vec<String>, PlanError> {
    args.iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .ok_or_else(|| unsupported(cmd, format_args!("argument {a:?} is not UTF-8")))
        })
        .collect()
}

/// Parse `args` against `specs` as git's parse-options would.
pub(super) fn parse_opts(cmd: &str, args: &[String], specs: &[Spec]) -> Result<Parsed, PlanError> {
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

// ---------------------------------------------------------------------------------------------
// The option tables, as in git's `builtin/*.c` (`git <cmd> -h`)

use Val::{No as N, Opt as O, Req as R};

pub(super) const CHECKOUT: &[Spec] = &[
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

pub(super) const SWITCH: &[Spec] = &[
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

pub(super) const RESET: &[Spec] = &[
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

pub(super) const MERGE_OPTS: &[Spec] = &[
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

pub(super) const PULL_ONLY: &[Spec] = &[
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

pub(super) const REBASE: &[Spec] = &[
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

pub(super) const CLEAN: &[Spec] = &[
    s('d', "d", N),
    o("force", Some('f'), N),
    o("interactive", Some('i'), N),
    o("dry-run", Some('n'), N),
    o("quiet", Some('q'), N),
    o("exclude", Some('e'), R),
    s('x', "x", N),
    s('X', "X", N),
];

pub(super) const STASH_PUSH: &[Spec] = &[
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

pub(super) const STASH_APPLY: &[Spec] = &[o("index", None, N), o("quiet", Some('q'), N)];

pub(super) const RM: &[Spec] = &[
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

pub(super) const RESTORE: &[Spec] = &[
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
