//! `dbguard init bash|zsh|fish`: a shell function `git` that sends the subcommands that
//! can overwrite or delete files through `dbguard git`, and everything else straight to git.

use crate::error::CommandError;
use crate::plan::PASS_THROUGH_SUBCOMMANDS;
use crate::ui::Ui;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  eval \"$(dbguard init bash)\"        in ~/.bashrc
  eval \"$(dbguard init zsh)\"         in ~/.zshrc
  dbguard init fish | source         in ~/.config/fish/config.fish

Afterwards `git pull` snapshots the databases it would overwrite; `git status`,
`git log` and friends go straight to git. `command git …` bypasses the function.")]
pub(crate) struct Args {
    pub(crate) shell: Shell,
}

pub(crate) fn script(shell: Shell) -> String {
    // Subcommands dbguard never plans go straight to git, with no dbguard process at all;
    // everything else (aliases too) goes through `dbguard git`, which runs git untouched
    // when it finds nothing at risk.
    let safe_cases = PASS_THROUGH_SUBCOMMANDS;
    match shell {
        Shell::Bash | Shell::Zsh => format!(
            r#"# dbguard: route git commands that can overwrite databases through `dbguard git`.
git() {{
  if ! command -v dbguard >/dev/null 2>&1; then
    command git "$@"
    return
  fi
  case "$1" in
    {}|"") command git "$@" ;;
    *) command dbguard git "$@" ;;
  esac
}}
"#,
            safe_cases.join("|")
        ),
        Shell::Fish => format!(
            r#"# dbguard: route git commands that can overwrite databases through `dbguard git`.
function git --wraps git --description 'git, with dbguard snapshots before risky commands'
    if not command -q dbguard
        command git $argv
        return
    end
    switch "$argv[1]"
        case {} ''
            command git $argv
        case '*'
            command dbguard git $argv
    end
end
"#,
            safe_cases.join(" ")
        ),
    }
}

pub(crate) fn run(ui: &Ui, args: &Args) -> Result<(), CommandError> {
    ui.out(script(args.shell).trim_end());
    Ok(())
}

/// The function as a user has it: bash with `eval "$(dbguard init bash)"`, no hooks
/// installed, so only a routing through `dbguard git` can snapshot anything.
#[cfg(test)]
mod tests {
    use std::fs;

    use crate::testing::{Run, TestRepo, add_posts, make_posts_db};

    /// A repository where every guarded command puts a database at risk: posts.db
    /// committed with 5,000 rows and grown to 9,000 (uncommitted), `other` with a
    /// 100-row posts.db and another a.txt, an untracked cache.db, and a patch.
    fn repository_at_risk() -> TestRepo {
        let repo = TestRepo::with_posts_on_main_and_other();
        fs::write(
            repo.path("a.patch"),
            repo.git(["diff", "main", "other", "--", "a.txt"]),
        )
        .unwrap();
        make_posts_db(&repo.root.join("cache.db"), 10, 8);
        let conn = rusqlite::Connection::open(repo.root.join("posts.db")).unwrap();
        add_posts(&conn, 4000, 8);
        repo
    }

    /// `git <args>` typed in bash, with the function defined (`with_function`) or not.
    fn typed(repo: &TestRepo, args: &[&str], with_function: bool) -> Run {
        let define = if with_function {
            r#"eval "$(dbguard init bash)""#
        } else {
            ":"
        };
        let script = format!("{define}\ngit \"$@\"");
        Run::from(
            repo.command("bash", &repo.root)
                .arg("-c")
                .arg(script)
                .arg("bash")
                .args(args)
                .output()
                .unwrap(),
        )
    }

    /// The command lines of the operations that snapshotted something.
    fn snapshotted_commands(repo: &TestRepo) -> Vec<String> {
        let log = repo.dbguard(["log", "--json"]).ok().json();
        log.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["operation"]["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn assert_guarded_through_the_function(args: &[&str]) {
        let repo = repository_at_risk();
        let patch = repo.path("a.patch");
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "PATCH" {
                    patch.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let run = typed(&repo, &args, true);
        let commands = snapshotted_commands(&repo);
        let line = format!("git {}", args.join(" "));
        assert!(
            commands.contains(&line),
            "`{line}` took no snapshot through the shell function: {commands:?}\n{}",
            run.stderr
        );
    }

    /// One case per command `dbguard git` snapshots before, each putting posts.db or
    /// cache.db at risk; the list is checked against the guard's own below.
    macro_rules! guarded_through_the_function {
        ($($name:ident: [$($arg:expr),+];)+) => {
            $(
                #[test]
                fn $name() {
                    assert_guarded_through_the_function(&[$($arg),+]);
                }
            )+
            const CASES: &[&[&str]] = &[$(&[$($arg),+]),+];
        };
    }

    guarded_through_the_function! {
        checkout: ["checkout", "-f", "other"];
        switch: ["switch", "-f", "other"];
        reset: ["reset", "--hard"];
        pull: ["pull", "-q", ".", "other"];
        merge: ["merge", "-q", "other"];
        rebase: ["rebase", "-q", "other"];
        clean: ["clean", "-f"];
        stash: ["stash", "-q"];
        rm: ["rm", "-q", "-f", "posts.db"];
        restore: ["restore", "posts.db"];
        cherry_pick: ["cherry-pick", "other"];
        revert: ["revert", "--no-edit", "HEAD"];
        am: ["am", "PATCH"];
        apply: ["apply", "--index", "PATCH"];
        read_tree: ["read-tree", "-u", "--reset", "HEAD"];
        checkout_index: ["checkout-index", "-f", "posts.db"];
        sparse_checkout: ["sparse-checkout", "set", "nothing"];
        mv: ["mv", "-f", "a.txt", "posts.db"];
        bisect: ["bisect", "start", "other", "main"];
    }

    #[test]
    fn every_command_the_guard_snapshots_for_has_a_case_above() {
        for name in crate::plan::guarded_subcommands() {
            assert!(
                CASES.iter().any(|case| case[0] == name),
                "no shell-function case for `git {name}`"
            );
        }
    }

    #[test]
    fn without_the_function_the_same_command_takes_no_snapshot() {
        // The control: the cases above fail when the function passes a command through.
        let repo = repository_at_risk();
        typed(&repo, &["mv", "-f", "a.txt", "posts.db"], false);
        assert!(
            repo.dbguard(["log", "--json"])
                .ok()
                .json()
                .as_array()
                .is_none_or(|snapshots| snapshots.is_empty())
        );
    }
}
