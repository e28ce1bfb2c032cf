//! `dbguard init bash|zsh|fish`: a shell function `git` that sends the subcommands that
//! can overwrite or delete files through `dbguard git`, and everything else straight to git.

use crate::error::CommandError;
use crate::ui::Ui;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
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
pub struct Args {
    pub shell: Shell,
}

/// Subcommands that never touch the working tree's files: straight to git, no dbguard
/// process at all. Everything else (including aliases) goes through `dbguard git`,
/// which runs git untouched when it finds nothing at risk.
const SAFE: &str = "status log diff show add commit push fetch branch tag remote config blame grep \
describe shortlog reflog help version ls-files ls-tree rev-parse cat-file show-ref \
for-each-ref notes worktree bisect cherry format-patch am apply mv gc fsck init clone submodule lfs";

pub fn script(shell: Shell) -> String {
    let safe_cases = SAFE.split_whitespace().collect::<Vec<_>>();
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

pub fn run(ui: &Ui, args: &Args) -> Result<(), CommandError> {
    ui.out(script(args.shell).trim_end());
    Ok(())
}
