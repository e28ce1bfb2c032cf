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
