//! `dbguard demo`: plays the story for real in a sandbox: a crawler's 900,000-row
//! database, a remote that tracks an old 5,000-row copy, the guarded pull, the shrink
//! report and the restore. Everything happens in a temporary directory that is removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::CommandError;
use crate::ui::{self, Tone, Ui};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "Example:
  dbguard demo            about ten seconds; leaves nothing behind")]
pub(crate) struct Args {
    /// Rows in the crawler's local database.
    #[arg(long, default_value_t = 900_000)]
    pub(crate) rows: u64,
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A command with an environment of its own: no user config, hooks or prompts leak in.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.home().join(".gitconfig"))
            .env("GIT_AUTHOR_NAME", "demo")
            .env("GIT_AUTHOR_EMAIL", "demo@example.com")
            .env("GIT_COMMITTER_NAME", "demo")
            .env("GIT_COMMITTER_EMAIL", "demo@example.com")
            .env("DBGUARD_NO_PROMPT", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        cmd
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> Result<(), CommandError> {
        let output = self
            .command("git", cwd)
            .args(args)
            .output()
            .map_err(|e| CommandError::with_source("cannot run git", e).hint("install git"))?;
        if !output.status.success() {
            return Err(
                CommandError::new(format!("demo step `git {}` failed", args.join(" ")))
                    .cause(String::from_utf8_lossy(&output.stderr).trim().to_string()),
            );
        }
        Ok(())
    }
}

fn make_posts(path: &Path, rows: u64) -> Result<(), CommandError> {
    let fail = |e: rusqlite::Error| CommandError::with_source("cannot create the demo database", e);
    let conn = rusqlite::Connection::open(path).map_err(fail)?;
    conn.execute_batch("CREATE TABLE posts(id INTEGER PRIMARY KEY, author TEXT, body TEXT);")
        .map_err(fail)?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO posts(author, body) SELECT 'user' || (i % 1000), 'post number ' || i FROM n",
        [rows as i64],
    )
    .map_err(fail)?;
    Ok(())
}

fn rows(path: &Path) -> String {
    crate::db::census_live(crate::db::DbKind::Sqlite, path)
        .map(|c| ui::count(c.total_rows()))
        .unwrap_or_else(|_| "gone".into())
}

pub(crate) fn run(ui: &Ui, args: &Args) -> Result<(), CommandError> {
    play(ui, args).map_err(|error| {
        error.hint("the demo needs git on PATH and a writable temporary directory ($TMPDIR)")
    })
}

fn play(ui: &Ui, args: &Args) -> Result<(), CommandError> {
    let me = std::env::current_exe()
        .map_err(|e| CommandError::with_source("cannot find the dbguard executable", e))?;
    let sandbox = Sandbox {
        dir: tempfile::Builder::new()
            .prefix("dbguard-demo-")
            .tempdir()
            .map_err(|e| CommandError::with_source("cannot create a temporary directory", e))?,
    };
    std::fs::create_dir_all(sandbox.home())
        .map_err(|e| CommandError::with_source("cannot prepare the sandbox", e))?;
    std::fs::write(
        sandbox.home().join(".gitconfig"),
        "[init]\n\tdefaultBranch = main\n",
    )
    .map_err(|e| CommandError::with_source("cannot prepare the sandbox", e))?;
    let step = |n: u32, text: &str| ui.out(&ui.paint(Tone::Bold, &format!("\n[{n}] {text}")));
    let root = sandbox.dir.path();
    let (upstream, remote, clone) = (
        root.join("upstream"),
        root.join("remote.git"),
        root.join("crawler"),
    );
    std::fs::create_dir_all(&upstream).map_err(|e| CommandError::new(e.to_string()))?;

    step(
        1,
        "A research team's repository ignores the crawler's database (posts.db).",
    );
    sandbox.git(&upstream, &["init", "-q"])?;
    std::fs::write(upstream.join(".gitignore"), "posts.db\n")
        .map_err(|e| CommandError::new(e.to_string()))?;
    sandbox.git(&upstream, &["add", ".gitignore"])?;
    sandbox.git(
        &upstream,
        &["commit", "-q", "-m", "ignore the crawler's database"],
    )?;
    sandbox.git(root, &["clone", "-q", "--bare", "upstream", "remote.git"])?;
    sandbox.git(root, &["clone", "-q", "remote.git", "crawler"])?;

    step(
        2,
        &format!(
            "The crawler fills its local posts.db with {} rows.",
            ui::count(args.rows)
        ),
    );
    make_posts(&clone.join("posts.db"), args.rows)?;
    ui.out(&format!(
        "    crawler/posts.db: {} rows",
        rows(&clone.join("posts.db"))
    ));

    step(
        3,
        "Upstream, someone force-adds an old 5,000-row sample as posts.db and pushes.",
    );
    make_posts(&upstream.join("posts.db"), 5000)?;
    sandbox.git(&upstream, &["add", "-f", "posts.db"])?;
    sandbox.git(&upstream, &["commit", "-q", "-m", "add sample data"])?;
    sandbox.git(
        &upstream,
        &[
            "push",
            "-q",
            remote.to_str().unwrap_or_default(),
            "HEAD:main",
        ],
    )?;

    step(
        4,
        "The crawler pulls with `dbguard pull` (without dbguard installed, plain `git pull` would overwrite posts.db silently; `dbguard install` guards plain git too).",
    );
    ui.out("    $ dbguard --yes pull");
    let pull = sandbox
        .command(&me, &clone)
        .args(["--yes", "--color", "never", "pull", "--no-rebase"])
        .output()
        .map_err(|e| CommandError::with_source("cannot run dbguard", e))?;
    for line in String::from_utf8_lossy(&pull.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&pull.stderr).lines())
    {
        ui.out(&format!("    {line}"));
    }
    if !pull.status.success() {
        return Err(CommandError::new(
            "the guarded pull failed in the demo sandbox",
        ));
    }

    step(5, "Afterwards:");
    ui.out(&format!(
        "    crawler/posts.db: {} rows (restored)",
        rows(&clone.join("posts.db"))
    ));
    let log = sandbox
        .command(&me, &clone)
        .args(["log", "--color", "never"])
        .output()
        .map_err(|e| CommandError::with_source("cannot run dbguard", e))?;
    for line in String::from_utf8_lossy(&log.stdout).lines() {
        ui.out(&format!("    {line}"));
    }
    ui.out(&format!(
        "\nIn your own repository: `dbguard install`, then `eval \"$(dbguard init bash)\"`.\n(The sandbox {} is removed now.)",
        root.display()
    ));
    Ok(())
}
