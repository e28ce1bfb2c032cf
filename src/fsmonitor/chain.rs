//! Running the `core.fsmonitor` hook that was configured before dbguard's (watchman's
//! `query-watchman` sample, scalar's, a script of the user's) exactly the way git would,
//! so its answer and its own tokens reach git unchanged.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Characters that make git run a hook value through `sh -c` (`run-command.c`,
/// `prepare_shell_cmd`) instead of executing it directly.
const SHELL_METACHARACTERS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', ' ', '\t', '\n', '*', '?', '[',
    '#', '~', '=', '%',
];

/// Run `value 2 <token>` from the worktree root (git's cwd for the hook) with stdin
/// closed (git's stdin is not ours to hand on) and stderr shared; its stdout when it
/// succeeded with a non-empty answer, `None` otherwise (the caller answers itself).
pub(crate) fn run_previous(
    value: &str,
    worktree: &Path,
    token: &str,
) -> io::Result<Option<Vec<u8>>> {
    let mut command = if value.contains(SHELL_METACHARACTERS) {
        let mut shell = Command::new("/bin/sh");
        shell.arg("-c").arg(format!("{value} \"$@\"")).arg(value);
        shell
    } else {
        Command::new(value)
    };
    let output = command
        .args(["2", token])
        .current_dir(worktree)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    Ok((output.status.success() && !output.stdout.is_empty()).then_some(output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn relays_the_previous_answer_with_git_arguments_and_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook",
            r#"printf 'tok-%s\0%s\0' "$2" "$(basename "$PWD")""#,
        );
        let worktree = dir.path().join("tree");
        std::fs::create_dir(&worktree).unwrap();
        let answer = run_previous(hook.to_str().unwrap(), &worktree, "7").unwrap();
        assert_eq!(answer.as_deref(), Some(&b"tok-7\0tree\0"[..]));
        // A value with a space runs through sh, as git runs it.
        let quoted = format!("'{}' extra", hook.display());
        let hook = script(dir.path(), "args", r#"printf '%s,' "$@"; printf '\0/\0'"#);
        let answer = run_previous(&quoted.replace("hook", "args"), &worktree, "t").unwrap();
        assert_eq!(answer.as_deref(), Some(&b"extra,2,t,\0/\0"[..]));
        drop(hook);
    }

    #[test]
    fn a_failing_or_silent_previous_hook_gives_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let failing = script(dir.path(), "fails", "echo oops; exit 2");
        let silent = script(dir.path(), "silent", "exit 0");
        for hook in [failing, silent] {
            assert_eq!(
                run_previous(hook.to_str().unwrap(), dir.path(), "t").unwrap(),
                None
            );
        }
        assert!(run_previous("/nonexistent/hook", dir.path(), "t").is_err());
    }
}
