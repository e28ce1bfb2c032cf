//! The planner end to end: real git repositories, real command lines, the databases a
//! plan lists and why.

use std::ffi::OsString;
use std::path::PathBuf;

use super::operation::ResetMode;
use super::test_repo::{Repo, os, r, risks, run_git};
use super::*;

#[test]
fn shell_alias_falls_back_to_every_database() {
    let repo = Repo::new();
    repo.write("a.db", "a");
    repo.commit("one");
    repo.git(&["config", "alias.nuke", "!git checkout . && git clean -fdx"]);
    let inv = repo.parse(&os("nuke"), &repo.root);
    assert_eq!(
        inv.shell_alias.as_deref(),
        Some("git checkout . && git clean -fdx")
    );
    let p = plan(
        &inv,
        &repo.root,
        &[PathBuf::from("a.db"), PathBuf::from("b/c.db")],
        None,
    )
    .unwrap();
    assert_eq!(
        p.operation,
        Operation::Unknown {
            subcommand: "nuke".into()
        }
    );
    assert_eq!(
        risks(&p),
        vec![
            r("a.db", RiskReason::Fallback),
            r("b/c.db", RiskReason::Fallback)
        ]
    );
    assert!(p.fallback_reason.unwrap().contains("shell alias"));
}

#[test]
fn checkout_and_rebase_take_the_branch_where_a_tag_has_the_same_name() {
    let repo = Repo::new();
    repo.write(".gitignore", "*.db\n");
    repo.write("README", "hi\n");
    repo.commit("main");
    let main = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", "-b", "with-db"]);
    repo.write("app.db", "tracked sample\n");
    repo.git(&["add", "-f", "app.db"]);
    repo.commit("tracks app.db");
    let with_db = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", "main"]);
    // `risky` the branch tracks app.db, `risky` the tag does not: git checks out the
    // branch (revision syntax alone would take the tag).
    repo.git(&["branch", "risky", with_db.trim()]);
    repo.git(&["tag", "risky", main.trim()]);
    // ... and so do `checkout -` and `@{-1}` when the branch checked out before was
    // `risky`: git expands them to that branch's name.
    repo.git(&["checkout", "-q", "risky"]);
    repo.git(&["checkout", "-q", "main"]);
    repo.write("app.db", "precious local rows\n");
    let dbs = ["app.db"];
    let overwritten = vec![r("app.db", RiskReason::Overwritten)];
    assert_eq!(risks(&repo.plan("checkout risky", &dbs)), overwritten);
    assert_eq!(risks(&repo.plan("switch risky", &dbs)), overwritten);
    assert_eq!(
        risks(&repo.plan("checkout -b copy risky", &dbs)),
        overwritten
    );
    assert_eq!(risks(&repo.plan("rebase main risky", &dbs)), overwritten);
    assert_eq!(risks(&repo.plan("checkout -", &dbs)), overwritten);
    assert_eq!(risks(&repo.plan("switch -", &dbs)), overwritten);
    assert_eq!(risks(&repo.plan("checkout @{-1}", &dbs)), overwritten);
    // A tag alone, and revision syntax, resolve as revisions.
    assert_eq!(risks(&repo.plan("checkout tags/risky", &dbs)), Vec::new());
    assert_eq!(risks(&repo.plan("checkout with-db~0", &dbs)), overwritten);
}

#[test]
fn checkout_of_a_branch_tracking_a_locally_ignored_database() {
    let repo = Repo::new();
    repo.write(".gitignore", "*.db\n");
    repo.write("README", "hi\n");
    repo.commit("main");
    repo.git(&["checkout", "-q", "-b", "data"]);
    repo.write("data/app.db", "tracked on data\n");
    repo.git(&["add", "-f", "data/app.db"]);
    repo.commit("data tracks the db");
    repo.git(&["checkout", "-q", "main"]);
    // the local, ignored database that `git checkout data` silently replaces
    repo.write("data/app.db", "precious local rows\n");
    repo.write("other.db", "unrelated\n");
    let dbs = ["data/app.db", "other.db"];

    let p = repo.plan("checkout data", &dbs);
    assert_eq!(p.fallback_reason, None);
    assert!(matches!(&p.operation, Operation::Checkout { target: Some(t), .. } if t == "data"));
    assert_eq!(risks(&p), vec![r("data/app.db", RiskReason::Overwritten)]);
    assert_eq!(
        risks(&repo.plan("switch data", &dbs)),
        vec![r("data/app.db", RiskReason::Overwritten)]
    );
    assert_eq!(
        risks(&repo.plan("checkout --detach data", &dbs)),
        vec![r("data/app.db", RiskReason::Overwritten)]
    );
    assert_eq!(
        risks(&repo.plan("checkout -b new data", &dbs)),
        vec![r("data/app.db", RiskReason::Overwritten)]
    );
    // creating a branch at HEAD touches nothing
    assert!(repo.plan("checkout -b new", &dbs).is_empty());
    assert!(repo.plan("switch -c new", &dbs).is_empty());

    // from data back to main the tracked database is deleted; `-` is the previous branch
    std::fs::remove_file(repo.root.join("data/app.db")).unwrap();
    repo.git(&["checkout", "-q", "data"]);
    assert_eq!(
        risks(&repo.plan("checkout main", &dbs)),
        vec![r("data/app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("checkout -", &dbs)),
        vec![r("data/app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("switch -", &dbs)),
        vec![r("data/app.db", RiskReason::Deleted)]
    );
    // switch --orphan empties the tree
    assert_eq!(
        risks(&repo.plan("switch --orphan fresh", &dbs)),
        vec![r("data/app.db", RiskReason::Deleted)]
    );
}

#[test]
fn unrelated_checkout_touches_no_database() {
    let repo = Repo::new();
    repo.write("app.db", "v1");
    repo.write("README", "one\n");
    repo.commit("one");
    repo.git(&["checkout", "-q", "-b", "docs"]);
    repo.write("README", "two\n");
    repo.commit("docs");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("app.db", "locally modified");
    let p = repo.plan("checkout docs", &["app.db"]);
    assert_eq!(p.fallback_reason, None);
    assert!(p.is_empty(), "{p:?}");
    // status, log, commit… are Other and plan nothing
    for argv in ["status", "log --oneline", "commit -m x", "fetch", "push"] {
        let p = repo.plan(argv, &["app.db"]);
        assert_eq!(p.operation, Operation::Other, "{argv}");
        assert!(p.is_empty());
    }
    // but checkout -f throws the local modification away
    assert_eq!(
        risks(&repo.plan("checkout -f docs", &["app.db"])),
        vec![r("app.db", RiskReason::Discarded)]
    );
}

#[test]
fn checkout_paths_discards_modified_tracked_databases() {
    let repo = Repo::new();
    repo.write("sub dir/a.db", "v1");
    repo.write("sub dir/b.db", "v1");
    repo.write("c.db", "v1");
    repo.commit("one");
    repo.write("sub dir/a.db", "v2");
    repo.write("c.db", "v2");
    let dbs = ["sub dir/a.db", "sub dir/b.db", "c.db"];
    let p = repo.plan("checkout -- .", &dbs);
    assert_eq!(
        risks(&p),
        vec![
            r("c.db", RiskReason::Discarded),
            r("sub dir/a.db", RiskReason::Discarded)
        ]
    );
    // a pathspec relative to -C, without `--`
    let argv: Vec<OsString> = ["-C", "sub dir", "checkout", "a.db"]
        .into_iter()
        .map(OsString::from)
        .collect();
    let inv = repo.parse(&argv, &repo.root);
    let p = plan(&inv, &repo.root, &dbs.map(PathBuf::from), None).unwrap();
    assert!(
        matches!(&p.operation, Operation::Checkout { target: None, paths, .. } if paths == &["a.db"])
    );
    assert_eq!(risks(&p), vec![r("sub dir/a.db", RiskReason::Discarded)]);
    // from a revision
    repo.commit("two");
    let p = repo.plan("checkout HEAD~1 -- c.db", &dbs);
    assert_eq!(risks(&p), vec![r("c.db", RiskReason::Overwritten)]);
}

#[test]
fn reset_hard_to_a_fetched_remote_branch() {
    let repo = Repo::new();
    repo.write("app.db", "v1");
    repo.write("cache.db", "v1");
    repo.write("notes.txt", "x");
    repo.commit("one");
    let other = repo.with_remote();
    std::fs::write(other.join("app.db"), "remote v2").unwrap();
    run_git(&repo, &other, &["commit", "-qam", "remote change"]);
    run_git(&repo, &other, &["push", "-q"]);
    repo.git(&["fetch", "-q"]);
    repo.write("cache.db", "local change");
    let dbs = ["app.db", "cache.db"];
    let p = repo.plan("reset --hard origin/main", &dbs);
    assert_eq!(p.fallback_reason, None);
    assert!(matches!(
        p.operation,
        Operation::Reset {
            mode: ResetMode::Hard,
            ..
        }
    ));
    assert_eq!(
        risks(&p),
        vec![
            r("app.db", RiskReason::Overwritten),
            r("cache.db", RiskReason::Discarded)
        ]
    );
    // --keep keeps local changes; soft and mixed touch no file
    assert_eq!(
        risks(&repo.plan("reset --keep origin/main", &dbs)),
        vec![r("app.db", RiskReason::Overwritten)]
    );
    assert!(repo.plan("reset --soft origin/main", &dbs).is_empty());
    assert!(repo.plan("reset origin/main", &dbs).is_empty());
    assert!(repo.plan("reset -- app.db", &dbs).is_empty());
    assert_eq!(
        risks(&repo.plan("reset --hard", &dbs)),
        vec![r("cache.db", RiskReason::Discarded)]
    );
}

#[test]
fn pull_of_a_commit_that_untracks_the_database() {
    let repo = Repo::new();
    repo.write("app.db", "v1");
    repo.write("other.db", "v1");
    repo.commit("one");
    let other = repo.with_remote();
    run_git(&repo, &other, &["rm", "-q", "--cached", "app.db"]);
    std::fs::write(other.join(".gitignore"), "*.db\n").unwrap();
    run_git(&repo, &other, &["add", ".gitignore"]);
    run_git(&repo, &other, &["commit", "-qm", "stop tracking the db"]);
    run_git(&repo, &other, &["push", "-q"]);

    let dbs = ["app.db", "other.db"];
    let inv = repo.parse(&os("pull"), &repo.root);
    let fetch: Vec<String> = pull_fetch_args(&inv)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let fetch: Vec<&str> = fetch.iter().map(String::as_str).collect();
    repo.git(&fetch);
    let p = plan(&inv, &repo.root, &dbs.map(PathBuf::from), None).unwrap();
    assert_eq!(p.fallback_reason, None);
    assert_eq!(risks(&p), vec![r("app.db", RiskReason::Deleted)]);
    // explicit remote and branch, and rebase
    assert_eq!(
        risks(&repo.plan("pull origin main", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("pull --rebase", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
    // merging the fetched branch, and rebasing onto it, plan the same
    assert_eq!(
        risks(&repo.plan("merge origin/main", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("merge", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("rebase origin/main", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
    assert_eq!(
        risks(&repo.plan("rebase", &dbs)),
        vec![r("app.db", RiskReason::Deleted)]
    );
}

#[test]
fn diverged_merge_uses_the_merge_result() {
    let repo = Repo::new();
    repo.write("a.db", "base");
    repo.write("b.db", "base");
    repo.write("c.db", "base");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("a.db", "side");
    repo.write("c.db", "side");
    repo.commit("side");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("b.db", "main");
    repo.write("c.db", "main");
    repo.commit("main");
    // a.db: only side changed → overwritten; b.db: only main changed → untouched;
    // c.db: both changed → conflict → overwritten (conflict content)
    let dbs = ["a.db", "b.db", "c.db"];
    let p = repo.plan("merge side", &dbs);
    assert_eq!(p.fallback_reason, None);
    assert_eq!(
        risks(&p),
        vec![
            r("a.db", RiskReason::Overwritten),
            r("c.db", RiskReason::Overwritten)
        ]
    );
    // a rebase passes through `side`'s tree: b.db is rewritten too
    let p = repo.plan("rebase side", &dbs);
    assert_eq!(
        risks(&p),
        vec![
            r("a.db", RiskReason::Overwritten),
            r("b.db", RiskReason::Overwritten),
            r("c.db", RiskReason::Overwritten)
        ]
    );
    // merging an ancestor touches nothing
    assert!(repo.plan("merge main~1", &dbs).is_empty());
    // abort throws away modified tracked databases
    repo.write("b.db", "dirty");
    assert_eq!(
        risks(&repo.plan("merge --abort", &dbs)),
        vec![r("b.db", RiskReason::Discarded)]
    );
    assert_eq!(repo.plan("rebase --continue", &dbs).at_risk.len(), 3);
    assert!(
        repo.plan("rebase --continue", &dbs)
            .fallback_reason
            .is_some()
    );
}

#[test]
fn clean_fdx_with_an_ignored_database_in_a_directory_with_spaces() {
    let repo = Repo::new();
    repo.write(".gitignore", "my data/\n");
    repo.write("tracked.db", "t");
    repo.commit("one");
    repo.write("my data/deep/x.db", "ignored");
    repo.write("scratch/é.db", "untracked");
    repo.write("top.db", "untracked");
    let dbs = ["my data/deep/x.db", "scratch/é.db", "top.db", "tracked.db"];
    let p = repo.plan("clean -fdx", &dbs);
    assert_eq!(p.fallback_reason, None);
    assert_eq!(
        risks(&p),
        vec![
            r("my data/deep/x.db", RiskReason::Cleaned),
            r("scratch/é.db", RiskReason::Cleaned),
            r("top.db", RiskReason::Cleaned)
        ]
    );
    // without -x ignored files stay; without -d untracked directories stay
    assert_eq!(
        risks(&repo.plan("clean -fd", &dbs)),
        vec![
            r("scratch/é.db", RiskReason::Cleaned),
            r("top.db", RiskReason::Cleaned)
        ]
    );
    assert_eq!(
        risks(&repo.plan("clean -f", &dbs)),
        vec![r("top.db", RiskReason::Cleaned)]
    );
    assert_eq!(risks(&repo.plan("clean -fX", &dbs)), vec![]);
    assert_eq!(
        risks(&repo.plan("clean -fdX", &dbs)),
        vec![r("my data/deep/x.db", RiskReason::Cleaned)]
    );
    // from a subdirectory, with a pathspec
    let p = repo.plan_in(&repo.root.join("scratch"), "clean -f -- .", &dbs);
    assert_eq!(risks(&p), vec![r("scratch/é.db", RiskReason::Cleaned)]);
    // interactive clean is planned like forced clean
    assert_eq!(
        risks(&repo.plan("clean -i", &dbs)),
        vec![r("top.db", RiskReason::Cleaned)]
    );
}

#[test]
fn stash_push_with_untracked_and_all() {
    let repo = Repo::new();
    repo.write(".gitignore", "*.ignored.db\n");
    repo.write("t.db", "v1");
    repo.write("clean.db", "v1");
    repo.commit("one");
    repo.write("t.db", "v2");
    repo.write("sub/u.db", "untracked");
    repo.write("i.ignored.db", "ignored");
    let dbs = ["clean.db", "i.ignored.db", "sub/u.db", "t.db"];
    assert_eq!(
        risks(&repo.plan("stash", &dbs)),
        vec![r("t.db", RiskReason::Stashed)]
    );
    assert_eq!(
        risks(&repo.plan("stash -u", &dbs)),
        vec![
            r("sub/u.db", RiskReason::Stashed),
            r("t.db", RiskReason::Stashed)
        ]
    );
    assert_eq!(
        risks(&repo.plan("stash push --all", &dbs)),
        vec![
            r("i.ignored.db", RiskReason::Stashed),
            r("sub/u.db", RiskReason::Stashed),
            r("t.db", RiskReason::Stashed)
        ]
    );
    assert_eq!(
        risks(&repo.plan("stash push -u -- sub", &dbs)),
        vec![r("sub/u.db", RiskReason::Stashed)]
    );
    assert!(repo.plan("stash list", &dbs).is_empty());

    // pop writes what the stash holds, untracked files included
    repo.git(&["stash", "push", "-q", "-u"]);
    repo.write("sub/u.db", "recreated meanwhile");
    let p = repo.plan("stash pop", &dbs);
    assert_eq!(p.fallback_reason, None);
    assert_eq!(
        risks(&p),
        vec![
            r("sub/u.db", RiskReason::Overwritten),
            r("t.db", RiskReason::Overwritten)
        ]
    );
    assert_eq!(risks(&repo.plan("stash apply 0", &dbs)), risks(&p));
    assert!(repo.plan("stash apply 7", &dbs).fallback_reason.is_some());
}

#[test]
fn rm_removes_tracked_databases_under_the_pathspec() {
    let repo = Repo::new();
    repo.write("data/a.db", "a");
    repo.write("data/b.db", "b");
    repo.write("c.db", "c");
    repo.commit("one");
    repo.write("data/new.db", "untracked");
    let dbs = ["c.db", "data/a.db", "data/b.db", "data/new.db"];
    assert_eq!(
        risks(&repo.plan("rm -r data", &dbs)),
        vec![
            r("data/a.db", RiskReason::Removed),
            r("data/b.db", RiskReason::Removed)
        ]
    );
    assert_eq!(
        risks(&repo.plan("rm -q -- c.db", &dbs)),
        vec![r("c.db", RiskReason::Removed)]
    );
    assert_eq!(
        risks(&repo.plan("rm data/*.db", &dbs)),
        vec![
            r("data/a.db", RiskReason::Removed),
            r("data/b.db", RiskReason::Removed)
        ]
    );
    assert!(repo.plan("rm --cached c.db", &dbs).is_empty());
    assert!(repo.plan("rm -n c.db", &dbs).is_empty());
}

#[test]
fn restore_worktree_staged_and_source() {
    let repo = Repo::new();
    repo.write("a.db", "v1");
    repo.write("b.db", "v1");
    repo.commit("one");
    repo.write("a.db", "v2");
    repo.commit("two");
    repo.write("a.db", "v3 local");
    let dbs = ["a.db", "b.db"];
    assert_eq!(
        risks(&repo.plan("restore a.db b.db", &dbs)),
        vec![r("a.db", RiskReason::Discarded)]
    );
    assert_eq!(
        risks(&repo.plan("restore .", &dbs)),
        vec![r("a.db", RiskReason::Discarded)]
    );
    assert!(repo.plan("restore --staged a.db", &dbs).is_empty());
    assert_eq!(
        risks(&repo.plan("restore -SW a.db", &dbs)),
        vec![r("a.db", RiskReason::Overwritten)]
    );
    assert_eq!(
        risks(&repo.plan("restore --source HEAD~1 -- .", &dbs)),
        vec![r("a.db", RiskReason::Overwritten)]
    );
    // a database the source lacks is deleted by restore (no overlay)
    repo.write("c.db", "new");
    repo.commit("three");
    assert_eq!(
        risks(&repo.plan("restore -s HEAD~1 .", &["a.db", "c.db"])),
        vec![
            r("a.db", RiskReason::Overwritten),
            r("c.db", RiskReason::Deleted)
        ]
    );
    // checkout <rev> -- . is overlay: c.db stays
    assert_eq!(
        risks(&repo.plan("checkout HEAD~1 -- .", &["a.db", "c.db"])),
        vec![r("a.db", RiskReason::Overwritten)]
    );
}

#[test]
fn unknown_revisions_fall_back_without_panicking() {
    let repo = Repo::new();
    repo.write("a.db", "v1");
    repo.commit("one");
    let dbs = ["a.db", "b/c.db"];
    for argv in [
        "reset --hard nosuchrev",
        "checkout nosuchrev",
        "checkout --detach nosuchrev",
        "switch nosuchrev",
        "merge nosuchrev",
        "rebase nosuchrev",
        "pull",
        "checkout --frobnicate main",
        "stash pop",
        "restore --source nosuchrev a.db",
    ] {
        let p = repo.plan(argv, &dbs);
        assert_eq!(
            risks(&p),
            vec![
                r("a.db", RiskReason::Fallback),
                r("b/c.db", RiskReason::Fallback)
            ],
            "{argv}: {p:?}"
        );
        assert!(
            p.fallback_reason.as_deref().is_some_and(|s| !s.is_empty()),
            "{argv}"
        );
    }
    // no databases, nothing to do; bad database paths are an error
    assert!(repo.plan("reset --hard nosuchrev", &[]).at_risk.is_empty());
    let inv = repo.parse(&os("checkout main"), &repo.root);
    assert!(matches!(
        plan(&inv, &repo.root, &[PathBuf::from("../escape.db")], None),
        Err(PlanError::InvalidPath(_))
    ));
}

#[test]
fn unborn_head_checkout_overwrites_untracked_databases() {
    let repo = Repo::new();
    let other = repo.base.join("seed");
    run_git(&repo, &repo.base, &["init", "-q", "-b", "main", "seed"]);
    std::fs::write(other.join("app.db"), "seed").unwrap();
    run_git(&repo, &other, &["add", "."]);
    run_git(
        &repo,
        &other,
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@y",
            "commit",
            "-qm",
            "seed",
        ],
    );
    repo.git(&["fetch", "-q", "../seed", "main:refs/remotes/seed/main"]);
    repo.write("app.db", "local before first checkout");
    assert_eq!(
        risks(&repo.plan("reset --hard seed/main", &["app.db"])),
        vec![r("app.db", RiskReason::Overwritten)]
    );
    assert_eq!(
        risks(&repo.plan("checkout seed/main", &["app.db"])),
        vec![r("app.db", RiskReason::Overwritten)]
    );
}
