//! A throwaway git repository for the planner's tests, and helpers to read plans.

use super::invocation::{GitInvocation, parse_invocation_with};
use super::{Plan, RiskReason, plan};
use crate::testing::TestRepo;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub(super) fn os(argv: &str) -> Vec<OsString> {
    argv.split_whitespace().map(OsString::from).collect()
}

impl Plan {
    /// True when git can run without snapshotting anything.
    pub(super) fn is_empty(&self) -> bool {
        self.at_risk.is_empty()
    }
}

/// The shared test repository (`crate::testing`), started empty (no commit), as the
/// planner's tests expect; `base` is the directory around it (remotes, other clones).
pub(super) struct Repo {
    inner: TestRepo,
    pub(super) base: PathBuf,
    pub(super) root: PathBuf,
}

/// Run git in `dir` with the test's hermetic environment.
pub(super) fn run_git(repo: &Repo, dir: &Path, args: &[&str]) -> String {
    repo.inner.git_in(dir, args)
}

impl Repo {
    pub(super) fn new() -> Repo {
        let inner = TestRepo::empty();
        let base = inner.tmp.path().canonicalize().unwrap();
        let root = inner.root.canonicalize().unwrap();
        Repo { inner, base, root }
    }

    pub(super) fn git(&self, args: &[&str]) -> String {
        self.inner.git(args)
    }

    /// A git runner with the test's hermetic environment, for the planner's queries.
    pub(super) fn runner(&self) -> crate::git::GitRunner {
        self.inner.runner()
    }

    /// Parse `argv` as git would in `dir`, with this repository's hermetic git.
    pub(super) fn parse(&self, argv: &[OsString], dir: &Path) -> GitInvocation {
        parse_invocation_with(argv, dir, self.runner()).unwrap()
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
            self,
            &self.base,
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        self.git(&["remote", "add", "origin", "../origin.git"]);
        self.git(&["push", "-q", "-u", "origin", "main"]);
        run_git(self, &self.base, &["clone", "-q", "origin.git", "other"]);
        let other = self.base.join("other");
        run_git(self, &other, &["config", "user.name", "Other"]);
        run_git(self, &other, &["config", "user.email", "o@example.com"]);
        other
    }

    pub(super) fn plan_in(&self, dir: &Path, argv: &str, dbs: &[&str]) -> Plan {
        let inv = self.parse(&os(argv), dir);
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
