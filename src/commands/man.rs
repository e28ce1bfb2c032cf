//! `dbguard man` and `dbguard completions`: the man page and shell completions, from the
//! clap definition, naming only what exists: no hidden subcommand, no page that is not
//! installed.

use std::io::{self, Write};

use clap::Command;

/// The man page (roff): clap_mangen's sections, with a synopsis that shows each option's
/// argument (`[-C DIR]`) and a command list that names commands, not `dbguard-x(1)` pages
/// that are never installed.
pub(crate) fn man_page(mut cmd: Command) -> io::Result<Vec<u8>> {
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    write_synopsis(&mut out, &cmd)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    write_commands(&mut out, &cmd)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Text as a roff line: backslashes and hyphens escaped, and a leading `.` or `'` kept
/// from being read as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn write_synopsis(out: &mut Vec<u8>, cmd: &Command) -> io::Result<()> {
    let mut line = format!("\\fB{}\\fR", roff(cmd.get_name()));
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
    {
        let flags: Vec<String> = arg
            .get_short()
            .map(|s| format!("\\fB\\-{}\\fR", roff(&s.to_string())))
            .into_iter()
            .chain(arg.get_long().map(|l| format!("\\fB\\-\\-{}\\fR", roff(l))))
            .collect();
        if flags.is_empty() {
            continue;
        }
        let mut item = flags.join("|");
        if arg.get_action().takes_values() {
            let value = arg.get_value_names().map_or_else(
                || arg.get_id().as_str().to_ascii_uppercase(),
                |names| {
                    names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            );
            item.push_str(&format!(" \\fI{}\\fR", roff(&value)));
        }
        line.push_str(&format!(" [{item}]"));
    }
    if cmd.has_subcommands() {
        line.push_str(" \\fICOMMAND\\fR");
    }
    writeln!(out, ".SH SYNOPSIS")?;
    writeln!(out, "{line}")
}

fn write_commands(out: &mut Vec<u8>, cmd: &Command) -> io::Result<()> {
    let name = cmd.get_name();
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        writeln!(out, ".TP")?;
        writeln!(out, "\\fB{} {}\\fR", roff(name), roff(sub.get_name()))?;
        if let Some(about) = sub.get_about() {
            for line in about.to_string().lines() {
                writeln!(out, "{}", roff(line))?;
            }
        }
    }
    writeln!(out, ".PP")?;
    writeln!(
        out,
        "\\fB{}\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR shows each command's options and examples.",
        roff(name)
    )
}

/// `cmd` without its hidden subcommands (clap_complete offers them otherwise): a new
/// command with the same arguments and the visible subcommands.
/// (`name` is the program's: clap wants a `'static` one.)
pub(crate) fn completion_command(name: &'static str, cmd: &Command) -> Command {
    let mut visible = Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}

/// The completion script for `shell`.
pub(crate) fn completions(
    shell: clap_complete::Shell,
    name: &'static str,
    cmd: &Command,
) -> Vec<u8> {
    let mut command = completion_command(name, cmd);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    /// The man page as `man` shows its words: font changes and escapes removed.
    fn plain(roff: &[u8]) -> String {
        String::from_utf8_lossy(roff)
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\fP", "")
            .replace("\\-", "-")
            .replace("\\e", "\\")
            .replace("\\&", "")
    }

    #[test]
    fn the_man_page_names_no_page_that_does_not_exist_and_shows_option_arguments() {
        let page = plain(&man_page(Cli::command()).expect("render"));
        // Every `name(section)` reference: only this page itself may be named.
        let mut references = Vec::new();
        for (i, _) in page.match_indices("(1)") {
            let start = page[..i]
                .rfind(|c: char| c.is_whitespace() || c == ',')
                .map_or(0, |s| s + 1);
            references.push(page[start..i].to_string());
        }
        assert!(
            references.iter().all(|r| r == "dbguard"),
            "{references:?}\n{page}"
        );
        let synopsis = page
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .expect("synopsis");
        assert!(synopsis.starts_with("dbguard [-C DIR]"), "{synopsis}");
        assert!(synopsis.contains("[--color COLOR]"), "{synopsis}");
        assert!(synopsis.contains("[-q|--quiet]"), "{synopsis}");
        // Every visible command is listed, the hidden one is not.
        for sub in Cli::command().get_subcommands() {
            let listed = page.contains(&format!("\ndbguard {}\n", sub.get_name()));
            assert_eq!(listed, !sub.is_hide_set(), "{}", sub.get_name());
        }
    }

    #[test]
    fn completions_offer_no_hidden_subcommand() {
        let full = Cli::command();
        let bash = String::from_utf8(completions(clap_complete::Shell::Bash, "dbguard", &full))
            .expect("utf8");
        let words: Vec<&str> = bash
            .split(|c: char| c.is_whitespace() || "\"'(),;|".contains(c))
            .collect();
        assert!(words.contains(&"snapshot") && words.contains(&"import-table"));
        assert!(!words.contains(&"hook"), "{bash}");
        assert!(!bash.contains("__subcmd__hook"), "{bash}");
        // Options of a subcommand still complete (the copy keeps them).
        assert!(bash.contains("--replace"), "{bash}");
        assert!(bash.contains("dbguard__subcmd__snapshot)"), "{bash}");
    }
}
