//! Odd and hostile input: a clear one-line error with a hint or a skip, never a panic,
//! and nothing half-written into the store.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use dbguard::testing::*;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The first line of stderr is the error, and a hint follows.
#[track_caller]
fn assert_clear_error(run: &Run, needle: &str) {
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Error: "),
        "not an error line: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        run.stderr
    );
    assert!(
        run.hints()
            .iter()
            .any(|h| *h != dbguard::testing::GENERAL_HINT),
        "no hint of its own in:\n{}",
        run.stderr
    );
}

#[test]
fn named_files_that_are_not_databases_are_refused_clearly() {
    let repo = TestRepo::new();
    for (name, needle) in [
        ("zero-byte.db", "empty file"),
        ("wrong-magic.db", "not a database"),
        ("encrypted.db", "no SQLite or DuckDB header"),
    ] {
        fs::copy(fixture(name), repo.root.join(name)).unwrap();
        let run = repo.dbguard(["snapshot", name]).fails_with(1);
        assert_eq!(run.code, 1);
        assert_clear_error(&run, needle);
    }
    assert!(
        !repo.store().join("catalog.db").exists()
            || repo.dbguard(["log", "--json"]).ok().json() == serde_json::json!([])
    );
}

#[test]
fn damaged_databases_are_refused_and_nothing_is_stored() {
    let repo = TestRepo::new();
    for name in ["truncated.db", "corrupt.db"] {
        fs::copy(fixture(name), repo.root.join(name)).unwrap();
        let run = repo.dbguard(["snapshot", name]).fails_with(1);
        assert_clear_error(&run, name);
        assert!(
            run.stderr.contains("corrupt") || run.stderr.contains("integrity"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        repo.dbguard(["log", "--json"]).ok().json(),
        serde_json::json!([])
    );
    assert_eq!(fs::read_dir(repo.store().join("tmp")).unwrap().count(), 0);
    repo.dbguard(["verify"]).ok();
}

#[test]
fn a_scan_skips_non_databases_and_saves_the_good_ones_despite_a_bad_one() {
    let repo = TestRepo::new();
    for name in [
        "zero-byte.db",
        "wrong-magic.db",
        "encrypted.db",
        "corrupt.db",
    ] {
        fs::copy(fixture(name), repo.root.join(name)).unwrap();
    }
    make_posts_db(&repo.root.join("good.db"), 50, 20);
    let run = repo.dbguard(["snapshot"]).fails_with(1);
    assert!(run.stderr.contains("corrupt.db"), "{}", run.stderr);
    let log = repo.dbguard(["log", "--json"]).ok().json();
    let paths: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].clone())
        .collect();
    assert_eq!(paths, vec![serde_json::json!("good.db")]);
}

#[test]
fn odd_paths_and_symlinks() {
    let repo = TestRepo::new();
    let dir = repo.root.join("dir with spaces/ünïcödé");
    fs::create_dir_all(&dir).unwrap();
    make_posts_db(&dir.join("my posts.db"), 5, 10);
    symlink(dir.join("my posts.db"), repo.root.join("link.db")).unwrap();

    let run = repo.dbguard(["snapshot", "--json"]).ok();
    let report = run.json();
    assert_eq!(
        report.as_array().unwrap().len(),
        1,
        "the symlink is not snapshotted twice"
    );
    assert_eq!(report[0]["path"], "dir with spaces/ünïcödé/my posts.db");
    assert!(
        run.stderr.contains("link.db"),
        "the skip is reported: {}",
        run.stderr
    );

    let run = repo.dbguard(["snapshot", "link.db"]).fails_with(1);
    assert_clear_error(&run, "symlink");

    let run = repo.dbguard(["snapshot", "no-such.db"]).fails_with(1);
    assert_clear_error(&run, "does not exist");
}

#[test]
fn outside_a_repository_or_in_a_bare_one() {
    let repo = TestRepo::new();
    let outside = repo.path("outside");
    fs::create_dir_all(&outside).unwrap();
    // Outside git dbguard works with a store of the directory's own; hooks need git.
    repo.dbguard_in(&outside, ["status"]).ok();
    let run = repo.dbguard_in(&outside, ["install"]).fails_with(1);
    assert_clear_error(&run, "needs a git repository");

    let bare = repo.path("bare.git");
    repo.git([
        "clone",
        "-q",
        "--bare",
        repo.root.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    let run = repo.dbguard_in(&bare, ["snapshot"]).fails_with(1);
    assert_clear_error(&run, "bare repository");

    let run = repo.dbguard(["show", "nonsense"]).fails_with(1);
    assert!(run.stderr.starts_with("Error: "), "{}", run.stderr);
    let run = repo.dbguard(["frobnicate"]).fails_with(2);
    assert_eq!(run.code, 2, "usage errors exit 2");
}
