//! The only place that writes to the terminal: data to stdout, status/warnings/hints to
//! stderr, one colour layer (NO_COLOR, --color), progress bars on a TTY only, and
//! prompts through /dev/tty so they work inside git hooks.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) mod json;
pub(crate) use crate::text::{
    WorkDone, age, bytes, count, local_time, rows, shell_quote, table, work_line,
};

/// The first failure to write stdout (a closed pipe, a full disk): kept, not dropped, so
/// that the exit code can say the output is incomplete (a `--json` line a script never
/// got must not exit 0).
static STDOUT_FAILURE: std::sync::Mutex<Option<io::ErrorKind>> = std::sync::Mutex::new(None);

fn write_stdout(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout.write_all(bytes) {
        record_stdout_failure(error.kind());
    }
}

fn record_stdout_failure(kind: io::ErrorKind) {
    let mut failure = STDOUT_FAILURE.lock().unwrap_or_else(|p| p.into_inner());
    failure.get_or_insert(kind);
}

/// Flush stdout and say whether anything written to it was lost, and why.
pub(crate) fn finish_stdout() -> Option<io::ErrorKind> {
    if let Err(error) = io::stdout().lock().flush() {
        record_stdout_failure(error.kind());
    }
    *STDOUT_FAILURE.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    Bold,
    Dim,
    Good,
    Bad,
    Warn,
}

pub(crate) struct Ui {
    pub(crate) color: bool,
    pub(crate) quiet: bool,
    pub(crate) json: bool,
    /// `dbguard:` in front of every stderr line (used inside git hooks).
    pub(crate) prefix: &'static str,
    /// Answer yes to every prompt (`--yes`).
    pub(crate) assume_yes: bool,
}

impl Ui {
    pub(crate) fn new(color: ColorChoice, quiet: bool, json: bool, assume_yes: bool) -> Ui {
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                !crate::env::no_color()
                    && io::stderr().is_terminal()
                    && !crate::env::dumb_terminal()
            }
        };
        Ui {
            color,
            quiet,
            json,
            prefix: "",
            assume_yes,
        }
    }

    pub(crate) fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match tone {
            Tone::Bold => "1",
            Tone::Dim => "2",
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Warn => "33",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// `text` as it may reach the terminal: every control character in it escaped
    /// (table names, paths and messages come from databases, files and remotes), except
    /// the colour codes of [`Ui::paint`] when colour is on. Every line printed passes
    /// through here; a name that carries one of those colour codes itself can only
    /// change a colour.
    pub(crate) fn safe<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        const PAINTED: [&str; 6] = [
            "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m",
        ];
        crate::text::escape_controls(text, if self.color { &PAINTED } else { &[] })
    }

    /// Data for scripts and people: stdout.
    pub(crate) fn out(&self, line: &str) {
        write_stdout(format!("{}\n", self.safe(line)).as_bytes());
    }

    /// JSON for scripts: stdout, with the controls JSON leaves raw escaped as `\uXXXX`.
    pub(crate) fn out_json(&self, json: &str) {
        write_stdout(format!("{}\n", crate::text::escape_json_controls(json)).as_bytes());
    }

    /// Bytes as they are (a completion script, a man page): stdout.
    pub(crate) fn out_bytes(&self, bytes: &[u8]) {
        write_stdout(bytes);
    }

    /// Progress and status: stderr, silenced by --quiet.
    pub(crate) fn status(&self, line: &str) {
        if !self.quiet {
            eprintln!("{}{}", self.prefix, self.safe(line));
        }
    }

    pub(crate) fn warn(&self, line: &str) {
        eprintln!(
            "{}{} {}",
            self.prefix,
            self.paint(Tone::Warn, "warning:"),
            self.safe(line)
        );
    }

    pub(crate) fn hint(&self, line: &str) {
        if !self.quiet {
            eprintln!(
                "{}{} {}",
                self.prefix,
                self.paint(Tone::Dim, "hint:"),
                self.safe(line)
            );
        }
    }

    /// Print an error with its causes and hints (the format every failure uses).
    pub(crate) fn error(&self, message: &str, causes: &[String], hints: &[String]) {
        eprintln!(
            "{}{} {}",
            self.prefix,
            self.paint(Tone::Bad, "Error:"),
            self.safe(message)
        );
        for cause in causes {
            eprintln!("{}  Caused by: {}", self.prefix, self.safe(cause));
        }
        for hint in hints {
            eprintln!(
                "{}  {} {}",
                self.prefix,
                self.paint(Tone::Dim, "Hint:"),
                self.safe(hint)
            );
        }
    }

    /// A byte-count progress bar with a rate and the time left, drawn only on a terminal
    /// and only after a second.
    pub(crate) fn progress(&self, total: u64, message: &str) -> ProgressBar {
        if self.quiet || self.json || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes}, {bytes_per_sec}, about {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(self.safe(message).into_owned());
        let shown = bar.clone();
        // Work that ends within a second never draws a bar.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !shown.is_finished() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
            }
        });
        bar
    }

    /// A spinner whose message says how far the work has got (export, verify: see
    /// [`crate::text::work_line`]), under the same rules as [`Ui::progress`]: a terminal only,
    /// and only after a second.
    pub(crate) fn spinner(&self, message: &str) -> ProgressBar {
        if self.quiet || self.json || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(self.safe(message).into_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        let shown = bar.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !shown.is_finished() {
                shown.set_draw_target(ProgressDrawTarget::stderr());
            }
        });
        bar
    }

    /// Whether a person can answer a question: a terminal we can open.
    pub(crate) fn can_prompt(&self) -> bool {
        if self.assume_yes {
            return true;
        }
        if crate::env::prompts_disabled() {
            return false;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .is_ok()
    }

    /// Ask a yes/no question on the terminal (`/dev/tty`, so it works inside hooks whose
    /// stdin is not the terminal). `None` when nobody can answer.
    pub(crate) fn confirm(&self, question: &str, default_yes: bool) -> Option<bool> {
        if self.assume_yes {
            return Some(true);
        }
        if !self.can_prompt() {
            return None;
        }
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let mut writer = tty.try_clone().ok()?;
        let choices = if default_yes { "[Y/n]" } else { "[y/N]" };
        write!(writer, "{}{} {choices} ", self.prefix, self.safe(question)).ok()?;
        writer.flush().ok()?;
        let mut answer = String::new();
        BufReader::new(tty).read_line(&mut answer).ok()?;
        Some(match answer.trim().to_ascii_lowercase().as_str() {
            "" => default_yes,
            "y" | "yes" => true,
            _ => false,
        })
    }
}
