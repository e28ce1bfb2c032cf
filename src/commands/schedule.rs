//! `dbguard schedule [--every 8h|daily|weekly] [--export …] [--remove] [--print]`: a
//! crontab entry (or, printed, a systemd user timer) that snapshots (or exports) and
//! prunes this working tree or directory, and pushes when a remote is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::commands::export::{CompressionArg, FormatArg};
use crate::error::CommandError;
use crate::flow::{Context, Place, outside_git};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:
  dbguard schedule                      every 8 hours (the default)
  dbguard schedule --every daily        03:00 every day
  dbguard schedule --every weekly       03:00 every Sunday
  dbguard schedule --print              show the crontab line and a systemd timer; install nothing
  dbguard schedule --remove             remove this working tree's entry
  dbguard schedule --export --format parquet,jsonl --compression gzip --keep 10
                                        also export every table each run, keep 10

The entry runs `dbguard snapshot --quiet && dbguard prune --quiet` in this working tree
(with --export, `dbguard export … --keep N` instead of the snapshot: it snapshots too),
then `dbguard push NAME --quiet` when a remote is set (the autopush one, or the only
one), and appends their output (one line per run) to schedule.log in the snapshot store.
Exports go to --out, by default outside the working tree (see `dbguard export --help`);
--keep removes only export folders dbguard made. Outside git the entry names the
directory's store with --store. It is
marked with a `# dbguard:<working tree>` comment, so installing again replaces it and
--remove removes only it; other crontab lines are left as they are. Cadences: Nh (every
N hours, 1-23), hourly, daily, weekly. cron runs with a minimal PATH: git must be in
/usr/bin or /bin, or use the systemd timer from --print.

The crontab program is `crontab`, or the one named by the environment variable
DBGUARD_CRONTAB (it is run as `$DBGUARD_CRONTAB -l` and `$DBGUARD_CRONTAB -`, e.g. a
script that keeps a temporary crontab in a file for tests).")]
pub(crate) struct Args {
    /// How often: Nh (e.g. 8h), hourly, daily or weekly.
    #[arg(long, value_name = "CADENCE", default_value = "8h")]
    pub(crate) every: String,
    /// Remove this working tree's entry instead of installing it.
    #[arg(long, conflicts_with = "print")]
    pub(crate) remove: bool,
    /// Print the crontab line and an equivalent systemd user timer; install nothing.
    #[arg(long)]
    pub(crate) print: bool,
    /// Export every table at each run (snapshotted then), instead of only a snapshot.
    #[arg(long)]
    pub(crate) export: bool,
    /// With --export: the formats, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "parquet,jsonl",
        requires = "export"
    )]
    pub(crate) format: Vec<FormatArg>,
    /// With --export: compression of Parquet pages and JSON Lines files.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd, requires = "export")]
    pub(crate) compression: CompressionArg,
    /// With --export: the directory the export folders go to (default: outside the
    /// working tree, as `dbguard export` without --out).
    #[arg(long, value_name = "DIR", requires = "export")]
    pub(crate) out: Option<PathBuf>,
    /// With --export: how many export folders of each database to keep.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "export")]
    pub(crate) keep: usize,
}

/// A cadence as cron and systemd spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cadence {
    pub(crate) cron: String,
    pub(crate) on_calendar: String,
}

/// `8h` → `0 */8 * * *`, `daily` → `0 3 * * *`, `weekly` → `0 3 * * 0`.
pub(crate) fn parse_cadence(text: &str) -> Result<Cadence, CommandError> {
    let text = text.trim().to_ascii_lowercase();
    let cadence = |cron: &str, on_calendar: &str| Cadence {
        cron: cron.to_string(),
        on_calendar: on_calendar.to_string(),
    };
    let bad = || {
        CommandError::new(format!("{text:?} is not a cadence"))
            .hint("use Nh with N from 1 to 23 (e.g. 8h), hourly, daily or weekly")
    };
    match text.as_str() {
        "hourly" | "1h" => Ok(cadence("0 * * * *", "hourly")),
        "daily" | "24h" | "1d" => Ok(cadence("0 3 * * *", "*-*-* 03:00:00")),
        "weekly" | "7d" | "1w" => Ok(cadence("0 3 * * 0", "Sun *-*-* 03:00:00")),
        _ => {
            let hours: u32 = text
                .strip_suffix('h')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            if !(1..=23).contains(&hours) {
                return Err(bad());
            }
            Ok(cadence(
                &format!("0 */{hours} * * *"),
                &format!("*-*-* 00/{hours}:00:00"),
            ))
        }
    }
}

/// Single-quote for sh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `text` as one sh word: as it is when it holds only characters sh leaves alone (the
/// line stays readable: `dbguard prune --quiet`), else single-quoted.
fn sh_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./,:=@+-".contains(&b));
    if plain {
        text.to_string()
    } else {
        sh_quote(text)
    }
}

/// The comment that marks this working tree's line.
pub(crate) fn marker(worktree: &Path) -> String {
    format!("# dbguard:{}", worktree.display())
}

/// What a scheduled run executes: dbguard's steps in the working tree, each only when the
/// one before succeeded, their output appended to the log.
pub(crate) struct Job {
    pub(crate) worktree: PathBuf,
    pub(crate) exe: PathBuf,
    pub(crate) log: PathBuf,
    /// Global options every step takes (`--store DIR` outside git).
    pub(crate) global: Vec<String>,
    pub(crate) steps: Vec<Vec<String>>,
}

impl Job {
    /// `snapshot` and `prune`, the schedule without exports or a remote.
    pub(crate) fn snapshot_and_prune(worktree: &Path, exe: &Path, log: &Path) -> Job {
        Job {
            worktree: worktree.to_path_buf(),
            exe: exe.to_path_buf(),
            log: log.to_path_buf(),
            global: Vec::new(),
            steps: [["snapshot", "--quiet"], ["prune", "--quiet"]]
                .iter()
                .map(|step| step.iter().map(|a| a.to_string()).collect())
                .collect(),
        }
    }

    /// The shell command (without cron's `%` escaping).
    pub(crate) fn command(&self) -> String {
        let exe = sh_quote(&self.exe.to_string_lossy());
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|step| {
                std::iter::once(exe.clone())
                    .chain(self.global.iter().chain(step).map(|a| sh_word(a)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        format!(
            "cd {} && {{ {}; }} >> {} 2>&1",
            sh_quote(&self.worktree.to_string_lossy()),
            steps.join(" && "),
            sh_quote(&self.log.to_string_lossy()),
        )
    }
}

/// The full crontab line, ending in the marker comment.
pub(crate) fn crontab_line(cadence: &Cadence, job: &Job) -> String {
    // In a crontab, `%` ends the command unless escaped.
    let command = job.command().replace('%', "\\%");
    format!("{} {command} {}", cadence.cron, marker(&job.worktree))
}

/// `table` without this working tree's line(s); the bool says whether any was there.
pub(crate) fn without_entry(table: &str, worktree: &Path) -> (String, bool) {
    let marker = marker(worktree);
    let mut found = false;
    let mut kept = String::new();
    for line in table.lines() {
        if line.trim_end().ends_with(&marker) {
            found = true;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    (kept, found)
}

fn spawn_error(program: &str, error: std::io::Error) -> CommandError {
    CommandError::with_source(format!("cannot run {program}"), error).hint(
        "install cron (or set DBGUARD_CRONTAB), or use `dbguard schedule --print` for a systemd timer",
    )
}

/// Whether `program` can be started at all: `crontab` found on PATH, or the path
/// DBGUARD_CRONTAB names existing. Without it there is no cron to install into.
fn crontab_missing(program: &str) -> bool {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return !path.exists();
    }
    let Some(dirs) = std::env::var_os("PATH") else {
        return true;
    };
    !std::env::split_paths(&dirs).any(|dir| dir.join(program).is_file())
}

/// What to say when there is no crontab program: cron is not installed, and the systemd
/// user timer that does the same job (printed on stdout, ready to save) is the answer.
fn no_cron(program: &str) -> CommandError {
    let what = if program == "crontab" {
        "cron is not installed (no `crontab` program on PATH)".to_string()
    } else {
        format!("the crontab program {program} (DBGUARD_CRONTAB) does not exist")
    };
    CommandError::new(format!("{what}, so nothing was scheduled"))
}

/// The current crontab; empty when the user has none.
fn read_crontab(program: &str) -> Result<String, CommandError> {
    let output = Command::new(program)
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program, e))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.to_ascii_lowercase().contains("no crontab") {
        return Ok(String::new());
    }
    Err(CommandError::new(format!("`{program} -l` failed"))
        .cause(stderr.trim().to_string())
        .hint("check that you may use cron (cron.allow / cron.deny)"))
}

fn write_crontab(program: &str, table: &str) -> Result<(), CommandError> {
    let mut child = Command::new(program)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(table.as_bytes())
            .map_err(|e| spawn_error(program, e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| spawn_error(program, e))?;
    if !output.status.success() {
        return Err(CommandError::new(format!("`{program} -` refused the new crontab"))
            .cause(String::from_utf8_lossy(&output.stderr).trim().to_string())
            .hint("your crontab was left as it was; `dbguard schedule --print` shows the line to add by hand"));
    }
    Ok(())
}

fn current_exe() -> Result<PathBuf, CommandError> {
    let exe = std::env::current_exe()
        .map_err(|e| CommandError::with_source("cannot tell where dbguard is installed", e))?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// A name for the systemd units: `dbguard-<last path component>`, in safe characters.
fn unit_name(worktree: &Path) -> String {
    let base: String = worktree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("dbguard-{}", base.trim_matches('-'))
}

/// The systemd user service and timer equivalent to the crontab line.
pub(crate) fn systemd_units(cadence: &Cadence, job: &Job) -> String {
    let worktree = &job.worktree;
    let name = unit_name(worktree);
    let command = job.command();
    // systemd's own quoting: a double-quoted argument with `\` and `"` escaped, `%` as `%%`.
    let quoted = command
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!(
        "# ~/.config/systemd/user/{name}.service
[Unit]
Description=dbguard snapshot and prune of {worktree}

[Service]
Type=oneshot
ExecStart=/bin/sh -c \"{quoted}\"

# ~/.config/systemd/user/{name}.timer
[Unit]
Description=dbguard snapshot and prune of {worktree}, on a schedule

[Timer]
OnCalendar={calendar}
Persistent=true

[Install]
WantedBy=timers.target

# then: systemctl --user daemon-reload && systemctl --user enable --now {name}.timer",
        worktree = worktree.display(),
        calendar = cadence.on_calendar,
    )
}

pub(crate) fn run(ui: &Ui, ctx: &Context, args: &Args) -> Result<(), CommandError> {
    let worktree = ctx.repo.worktree.clone();
    let program = crate::env::crontab_program();
    if args.remove {
        if crontab_missing(&program) {
            ui.status(&format!(
                "no dbguard schedule for {}: cron is not installed here",
                worktree.display()
            ));
            ui.hint(&format!(
                "a systemd timer from `dbguard schedule --print` is removed with: systemctl --user disable --now {}.timer",
                unit_name(&worktree)
            ));
            return Ok(());
        }
        let table = read_crontab(&program)?;
        let (kept, found) = without_entry(&table, &worktree);
        if !found {
            ui.status(&format!("no dbguard schedule for {}", worktree.display()));
            return Ok(());
        }
        write_crontab(&program, &kept)?;
        ui.status(&format!("removed the schedule for {}", worktree.display()));
        return Ok(());
    }
    let cadence = parse_cadence(&args.every)?;
    let exe = current_exe()?;
    let log = ctx.settings.store.value.join("schedule.log");
    let job = job(ui, ctx, args, &exe, &log)?;
    // A crontab entry is one line, and cron reads `%` and newlines itself: a path with a
    // line break would add lines of its own to the user's crontab.
    let lines = [
        ("working tree", worktree.as_os_str()),
        ("dbguard program", exe.as_os_str()),
    ]
    .into_iter()
    .chain(
        job.global
            .iter()
            .chain(job.steps.iter().flatten())
            .map(|a| ("store or export", std::ffi::OsStr::new(a))),
    )
    .chain([("store", log.as_os_str())]);
    for (what, path) in lines {
        let path = Path::new(path);
        if path
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| matches!(b, b'\n' | b'\r'))
        {
            return Err(CommandError::new(format!(
                "the {what} path {:?} contains a line break, which a crontab line cannot hold",
                path.display().to_string()
            ))
            .hint("rename or move it to a path without line breaks, or run `dbguard snapshot` from your own scheduler"));
        }
    }
    let line = crontab_line(&cadence, &job);
    if !args.print && crontab_missing(&program) {
        ui.out("# a systemd user timer that snapshots and prunes this working tree:");
        ui.out(&systemd_units(&cadence, &job));
        return Err(no_cron(&program).hint(format!(
            "save the two units printed above as the files they name and run the systemctl line; or install cron and run `dbguard schedule --every {}` again",
            args.every
        )));
    }
    if !args.print {
        // The log lives in the store; create it now so the first run can append to it.
        drop(ctx.store()?);
    }
    if args.print {
        ui.out("# crontab (crontab -e):");
        ui.out(&line);
        ui.out("");
        ui.out("# or a systemd user timer:");
        ui.out(&systemd_units(&cadence, &job));
        return Ok(());
    }
    let table = read_crontab(&program)?;
    if table.lines().any(|l| l.trim_end() == line) {
        ui.status(&format!("already scheduled: {line}"));
        return Ok(());
    }
    let (mut kept, replaced) = without_entry(&table, &worktree);
    kept.push_str(&line);
    kept.push('\n');
    write_crontab(&program, &kept)?;
    ui.status(&format!(
        "{} {line}",
        if replaced {
            "replaced with:"
        } else {
            "installed:"
        }
    ));
    ui.status(&format!("each run logs one line to {}", log.display()));
    Ok(())
}

/// The steps of this schedule: snapshot or export, prune, push when a remote is set.
fn job(ui: &Ui, ctx: &Context, args: &Args, exe: &Path, log: &Path) -> Result<Job, CommandError> {
    let worktree = &ctx.repo.worktree;
    let mut job = Job::snapshot_and_prune(worktree, exe, log);
    if ctx.place == Place::Directory {
        // cron knows neither this shell's DBGUARD_STORE nor a --store typed here.
        job.global = vec![
            "--store".to_string(),
            ctx.settings.store.value.to_string_lossy().into_owned(),
        ];
    }
    if args.export {
        let out = match &args.out {
            Some(out) => ctx.cwd.join(out),
            None => outside_git::default_export_dir(worktree)?,
        };
        let formats: Vec<&str> = args
            .format
            .iter()
            .map(|f| match f {
                FormatArg::Parquet => "parquet",
                FormatArg::Jsonl => "jsonl",
            })
            .collect();
        let compression = match args.compression {
            CompressionArg::Zstd => "zstd",
            CompressionArg::Gzip => "gzip",
            CompressionArg::None => "none",
        };
        job.steps[0] = [
            "export",
            "--quiet",
            "--format",
            &formats.join(","),
            "--compression",
            compression,
            "--out",
            &out.to_string_lossy(),
            "--keep",
            &args.keep.to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
    }
    match crate::flow::remote::resolve(ctx, None) {
        Ok(remote) => job.steps.push(vec![
            "push".to_string(),
            remote.name.clone(),
            "--quiet".to_string(),
        ]),
        Err(_) if ctx.settings.remotes.is_empty() => {}
        Err(error) => {
            ui.warn(&format!("the schedule does not push: {}", error.message()));
            ui.hint("choose the remote it pushes to: `dbguard remote add NAME URL --autopush`, then schedule again");
        }
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadences() {
        assert_eq!(parse_cadence("8h").unwrap().cron, "0 */8 * * *");
        assert_eq!(parse_cadence("2h").unwrap().cron, "0 */2 * * *");
        assert_eq!(parse_cadence("hourly").unwrap().cron, "0 * * * *");
        assert_eq!(parse_cadence("daily").unwrap().cron, "0 3 * * *");
        assert_eq!(parse_cadence("weekly").unwrap().cron, "0 3 * * 0");
        for bad in ["0h", "25h", "often", "h", "-3h"] {
            assert!(parse_cadence(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_line_is_found_by_its_marker_and_nothing_else_is() {
        let wt = Path::new("/home/a/proj");
        let line = crontab_line(
            &parse_cadence("8h").unwrap(),
            &Job::snapshot_and_prune(
                wt,
                Path::new("/usr/bin/dbguard"),
                Path::new("/home/a/proj/.git/dbguard/schedule.log"),
            ),
        );
        assert!(line.starts_with("0 */8 * * * cd '/home/a/proj' && "));
        assert!(line.ends_with("# dbguard:/home/a/proj"));
        let other = "0 1 * * * backup.sh # dbguard:/home/a/proj2\n";
        let table = format!("MAILTO=a\n{line}\n{other}");
        let (kept, found) = without_entry(&table, wt);
        assert!(found);
        assert_eq!(kept, format!("MAILTO=a\n{other}"));
    }

    #[test]
    fn only_words_sh_would_change_are_quoted() {
        assert_eq!(sh_word("--quiet"), "--quiet");
        assert_eq!(sh_word("/data/exports,x=1"), "/data/exports,x=1");
        assert_eq!(sh_word("a b"), "'a b'");
        assert_eq!(sh_word("it's"), "'it'\\''s'");
        assert_eq!(sh_word("$HOME"), "'$HOME'");
        assert_eq!(sh_word(""), "''");
    }

    #[test]
    fn percent_signs_are_escaped_for_cron() {
        let line = crontab_line(
            &parse_cadence("daily").unwrap(),
            &Job::snapshot_and_prune(
                Path::new("/w/100%"),
                Path::new("/bin/dbguard"),
                Path::new("/w/100%/.git/dbguard/schedule.log"),
            ),
        );
        assert!(line.contains("'/w/100\\%'"));
    }
}
