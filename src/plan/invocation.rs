//! A git command line → [`GitInvocation`]: git's global options (`-C`, `-c`, `--git-dir`, …)
//! in order, then the subcommand with aliases resolved through `git config`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::PlanError;
use super::query::{check, git_raw, query_globals, to_os};
use super::subcommands::BUILTINS;
use crate::fsmonitor::classify::GLOBAL_WITH_VALUE;
use crate::git::{FSMONITOR_OFF, GitRunner};

/// A parsed `git …` command line (argv without the leading `git`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitInvocation {
    /// Global options before the subcommand, in order (`-C x`, `-c k=v`, `--git-dir=…`, …),
    /// including those contributed by alias expansion.
    pub(crate) global: Vec<OsString>,
    /// The subcommand after alias resolution (`None` for `git` alone or `git --exec-path`).
    pub(crate) subcommand: Option<String>,
    /// Arguments after the subcommand (alias arguments included).
    pub(crate) args: Vec<OsString>,
    /// The effective directory after applying every `-C`.
    pub(crate) cwd: PathBuf,
    /// Alias names expanded to reach `subcommand`, outermost first.
    pub(crate) aliases: Vec<String>,
    /// When `subcommand` is a shell alias (`!…`), its text: the command cannot be planned.
    pub(crate) shell_alias: Option<String>,
    /// How the planner starts git for its queries (alias lookups here, the rest later).
    pub(crate) runner: GitRunner,
}

impl GitInvocation {
    /// An argv dbguard could not parse, kept whole: planned as "anything may change" in
    /// the repository around `cwd`.
    pub(crate) fn unparsed(argv: &[OsString], cwd: &Path) -> GitInvocation {
        GitInvocation {
            global: Vec::new(),
            subcommand: None,
            args: argv.to_vec(),
            cwd: cwd.to_path_buf(),
            aliases: Vec::new(),
            shell_alias: None,
            runner: GitRunner::default(),
        }
    }
}

/// How many aliases may expand into each other before git (and so dbguard) gives up.
const ALIAS_DEPTH: usize = 16;

/// Parse git's argv (without the leading `git`) run from `cwd`: global options, then the
/// subcommand with aliases resolved through `git config` (honouring `-c` and `-C`).
pub(crate) fn parse_invocation(argv: &[OsString], cwd: &Path) -> Result<GitInvocation, PlanError> {
    parse_invocation_with(argv, cwd, GitRunner::default())
}

/// Parse the argv of a git that is running already, in `dir`, the directory its `-C`
/// options led to (git's hooks learn it from `GIT_PREFIX`: git has changed to the top of
/// the worktree by then, so the process's own cwd no longer says). Its `-C` options are
/// kept in [`GitInvocation::global`] but not applied again.
pub(crate) fn parse_running_invocation(
    argv: &[OsString],
    dir: &Path,
) -> Result<GitInvocation, PlanError> {
    parse(argv, dir, GitRunner::default(), Directory::Reached)
}

/// [`parse_invocation`] whose git queries start through `runner` (tests: a hermetic one).
pub(crate) fn parse_invocation_with(
    argv: &[OsString],
    cwd: &Path,
    runner: GitRunner,
) -> Result<GitInvocation, PlanError> {
    parse(argv, cwd, runner, Directory::Typed)
}

/// Where the directory given to the parser stands relative to the argv's `-C` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directory {
    /// Where the command was typed: each `-C` moves from there.
    Typed,
    /// Where the running git works already: every `-C` has been applied.
    Reached,
}

fn parse(
    argv: &[OsString],
    cwd: &Path,
    runner: GitRunner,
    directory: Directory,
) -> Result<GitInvocation, PlanError> {
    let mut inv = GitInvocation {
        args: Vec::new(),
        runner,
        ..GitInvocation::unparsed(&[], cwd)
    };
    let mut rest: VecDeque<OsString> = argv.iter().cloned().collect();
    loop {
        if take_global_options(&mut inv, &mut rest, directory)? == AfterOption::Complete {
            inv.args = rest.into_iter().collect();
            return Ok(inv);
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
        let Some(value) = alias_value(&inv, &name)? else {
            // not an alias (or an invalid key): an external command or a typo
            inv.subcommand = Some(name);
            inv.args = rest.into_iter().collect();
            return Ok(inv);
        };
        enter_alias(&mut inv, &name)?;
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

/// Whether the command line goes on after a global option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterOption {
    /// More global options or the subcommand follow.
    Continue,
    /// `--version`, `--help`, `--exec-path`, …: git runs no subcommand; the rest are its arguments.
    Complete,
}

/// Move the global options at the front of `rest` into `inv`.
fn take_global_options(
    inv: &mut GitInvocation,
    rest: &mut VecDeque<OsString>,
    directory: Directory,
) -> Result<AfterOption, PlanError> {
    while let Some(a) = rest.front() {
        let Some(s) = a.to_str() else { break };
        if !s.starts_with('-') {
            break;
        }
        let s = s.to_owned();
        rest.pop_front();
        if take_global_option(inv, s, rest, directory)? == AfterOption::Complete {
            return Ok(AfterOption::Complete);
        }
    }
    Ok(AfterOption::Continue)
}

/// Apply one global option `s` to `inv`, taking its separate value (if any) from `rest`.
fn take_global_option(
    inv: &mut GitInvocation,
    s: String,
    rest: &mut VecDeque<OsString>,
    directory: Directory,
) -> Result<AfterOption, PlanError> {
    match s.as_str() {
        "--help" | "-h" | "--version" | "-v" => {
            inv.subcommand = Some(if s.contains('h') { "help" } else { "version" }.into());
            return Ok(AfterOption::Complete);
        }
        "--exec-path" | "--html-path" | "--man-path" | "--info-path" => {
            inv.global.push(s.into());
            return Ok(AfterOption::Complete);
        }
        _ if s.starts_with("--list-cmds=") => {
            inv.global.push(s.into());
            return Ok(AfterOption::Complete);
        }
        "-C" => {
            refuse_in_alias(inv, &s)?;
            let dir = rest
                .pop_front()
                .ok_or_else(|| PlanError::InvalidArgs("no directory given for -C".into()))?;
            if !dir.is_empty() && directory == Directory::Typed {
                inv.cwd = inv.cwd.join(&dir);
            }
            inv.global.push(s.into());
            inv.global.push(dir);
        }
        // The same table as the fsmonitor hook's classifier: both must find the same
        // subcommand.
        _ if GLOBAL_WITH_VALUE.contains(&s.as_str()) => {
            if !matches!(s.as_str(), "-c" | "--config-env") {
                refuse_in_alias(inv, &s)?;
            }
            let v = rest
                .pop_front()
                .ok_or_else(|| PlanError::InvalidArgs(format!("no value given for {s}")))?;
            inv.global.push(s.into());
            inv.global.push(v);
        }
        "--bare" => {
            refuse_in_alias(inv, &s)?;
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
            refuse_in_alias(inv, &s)?;
            inv.global.push(s.into());
        }
        _ if s.starts_with("--attr-source=") => inv.global.push(s.into()),
        _ => return Err(PlanError::InvalidArgs(format!("unknown option: {s}"))),
    }
    Ok(AfterOption::Continue)
}

/// Git refuses an alias that changes the repository, the worktree or the directory
/// (`-C`, `--git-dir`, …): so does the planner.
fn refuse_in_alias(inv: &GitInvocation, option: &str) -> Result<(), PlanError> {
    match inv.aliases.last() {
        Some(alias) => Err(PlanError::InvalidArgs(format!(
            "alias '{alias}' changes environment variables ({option})"
        ))),
        None => Ok(()),
    }
}

/// `alias.<name>` as git would read it for this invocation (its `-c` and `-C` applied),
/// `None` when `name` is no alias.
fn alias_value(inv: &GitInvocation, name: &str) -> Result<Option<String>, PlanError> {
    let mut q = query_globals(&inv.global);
    q.extend(FSMONITOR_OFF.iter().map(OsString::from));
    q.extend(to_os(["config", "--get", &format!("alias.{name}")]));
    let out = git_raw(&inv.runner, &inv.cwd, &q, false)?;
    match out.status.code() {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        )),
        Some(1) => Ok(None),
        _ => {
            check(&inv.cwd, &q, out)?;
            unreachable!("check fails on a non-zero exit")
        }
    }
}

/// Record that `name` expands as an alias; a loop or too deep a chain is an error, as in git.
fn enter_alias(inv: &mut GitInvocation, name: &str) -> Result<(), PlanError> {
    let looped = inv.aliases.iter().any(|a| a == name);
    inv.aliases.push(name.to_owned());
    if looped || inv.aliases.len() > ALIAS_DEPTH {
        return Err(PlanError::AliasLoop(inv.aliases.join(" -> ")));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::plan::query::query_globals;
    use crate::plan::test_repo::{Repo, os};

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
        let inv = repo.parse(&os("com --force"), &repo.root);
        assert_eq!(inv.subcommand.as_deref(), Some("checkout"));
        assert_eq!(inv.args, os("-q main --force"));
        assert_eq!(inv.aliases, vec!["com", "co"]);

        // an alias given with -c on the command line, with global options inside it
        let argv: Vec<OsString> = ["-c", "alias.sw=-c x.y=1 switch", "sw", "dev"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let inv = repo.parse(&argv, &repo.root);
        assert_eq!(inv.subcommand.as_deref(), Some("switch"));
        assert_eq!(inv.args, os("dev"));
        let want: Vec<OsString> = ["-c", "alias.sw=-c x.y=1 switch", "-c", "x.y=1"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(inv.global, want);

        // builtins win over aliases, as in git
        repo.git(&["config", "alias.status", "checkout main"]);
        let inv = repo.parse(&os("status"), &repo.root);
        assert_eq!(inv.subcommand.as_deref(), Some("status"));
        assert!(inv.aliases.is_empty());

        // unknown names stay as they are (external commands)
        let inv = repo.parse(&os("frob x"), &repo.root);
        assert_eq!(inv.subcommand.as_deref(), Some("frob"));
    }

    #[test]
    fn alias_loops_and_env_changing_aliases_are_errors() {
        let repo = Repo::new();
        repo.git(&["config", "alias.a", "b"]);
        repo.git(&["config", "alias.b", "a -x"]);
        assert!(matches!(
            parse_invocation_with(&os("a"), &repo.root, repo.runner()),
            Err(PlanError::AliasLoop(_))
        ));
        repo.git(&["config", "alias.elsewhere", "-C /tmp checkout"]);
        assert!(matches!(
            parse_invocation_with(&os("elsewhere"), &repo.root, repo.runner()),
            Err(PlanError::InvalidArgs(_))
        ));
    }
}
