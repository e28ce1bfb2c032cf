//! A throwaway git repository for the planner's tests, and helpers to read plans.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use super::{Plan, RiskReason, parse_invocation, plan};

pub(super) fn os(argv: &str) -> Vec<OsString> {
    argv.split_whitespace().map(OsString::from).collect()
}

/// The planner runs git with the process environment: make it hermetic once.
fn hermetic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("dbguard-plan-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("gitconfig");
        std::fs::write(&cfg, "").unwrap();
        // SAFETY: runs once, before any test of this module spawns git.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("GIT_CONFIG_NOSYSTEM", "1");
            std::env::set_var("GIT_CONFIG_GLOBAL", &cfg);
        }
    });
}

impl Plan {
    /// True when git can run without snapshotting anything.
    pub(super) fn is_empty(&self) -> bool {
        self.at_risk.is_empty()
    }
}

pub(super) struct Repo {
    _tmp: tempfile::TempDir,
    pub(super) base: PathBuf,
    pub(super) root: PathBuf,
}

pub(super) fn run_git(base: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", base)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", base.join(".gitconfig"))
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Repo {
    pub(super) fn new() -> Repo {
        hermetic();
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        std::fs::write(base.join(".gitconfig"), "").unwrap();
        let root = base.join("work");
        run_git(&base, &base, &["init", "-q", "-b", "main", "work"]);
        let r = Repo {
            _tmp: tmp,
            base,
            root,
        };
        r.git(&["config", "user.name", "Test"]);
        r.git(&["config", "user.email", "test@example.com"]);
        r
    }

    pub(super) fn git(&self, args: &[&str]) -> String {
        run_git(&self.base, &self.root, args)
    }

    pub(super) fn write(&self, path: &str, content: &str) {
        let p = self.root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub(super) fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    }

    /// A bare remote `origin` next to the work tree, with main pushed, and a second clone.
    pub(super) fn with_remote(&self) -> PathBuf {
        run_git(
            &self.base,
            &self.base,
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        self.git(&["remote", "add", "origin", "../origin.git"]);
        self.git(&["push", "-q", "-u", "origin", "main"]);
        run_git(
            &self.base,
            &self.base,
            &["clone", "-q", "origin.git", "other"],
        );
        let other = self.base.join("other");
        run_git(&self.base, &other, &["config", "user.name", "Other"]);
        run_git(
            &self.base,
            &other,
            &["config", "user.email", "o@example.com"],
        );
        other
    }

    pub(super) fn plan_in(&self, dir: &Path, argv: &str, dbs: &[&str]) -> Plan {
        let inv = parse_invocation(&os(argv), dir).unwrap();
        let dbs: Vec<PathBuf> = dbs.iter().map(PathBuf::from).collect();
        plan(&inv, &self.root, &dbs, None).unwrap()
    }

    pub(super) fn plan(&self, argv: &str, dbs: &[&str]) -> Plan {
        self.plan_in(&self.root, argv, dbs)
    }
}

pub(super) fn risks(p: &Plan) -> Vec<(String, RiskReason)> {
    p.at_risk
        .iter()
        .map(|a| (a.path.to_string_lossy().into_owned(), a.why))
        .collect()
}

pub(super) fn r(path: &str, why: RiskReason) -> (String, RiskReason) {
    (path.to_owned(), why)
}
