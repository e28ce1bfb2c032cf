//! Where the hook and its watcher keep a worktree's state (answer snapshots, operation
//! markers, the watcher's socket, lock and cookies): a private directory per git dir in
//! the user's runtime directory, never inside the git dir. git's own commands move, copy
//! and list git dirs (`git submodule absorbgitdirs`, `git worktree move`, checkouts that
//! compare `.git/modules/…`), and a live socket or a cookie appearing there breaks them.
//!
//! `$XDG_RUNTIME_DIR/dbguard-fsmonitor/<hash>` when that directory is the user's, else
//! `/tmp/dbguard-fsmonitor-<uid>/<hash>`; `<hash>` names the canonical git dir, which
//! each state dir records in its `gitdir` file (a state dir whose git dir is gone is
//! removed when a new one is made). Every directory is created 0700; one owned by
//! another user, reached through a symlink, or open to group or others is refused:
//! another user could otherwise answer git's queries or read the worktree's paths.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The directory under `$XDG_RUNTIME_DIR`, and the prefix of `/tmp/<prefix>-<uid>`.
const BASE_NAME: &str = "dbguard-fsmonitor";

/// In each state dir: the canonical git dir it belongs to.
const OWNER_FILE: &str = "gitdir";

/// The state dir of `git_dir`, created when missing.
pub(crate) fn state_dir(git_dir: &Path) -> io::Result<PathBuf> {
    state_dir_in(&base_dir()?, git_dir)
}

fn state_dir_in(base: &Path, git_dir: &Path) -> io::Result<PathBuf> {
    let git_dir = fs::canonicalize(git_dir)?;
    let dir = base.join(format!("{:016x}", fnv1a(git_dir.as_os_str().as_bytes())));
    match fs::read(dir.join(OWNER_FILE)) {
        Ok(owner) if owner == git_dir.as_os_str().as_bytes() => return Ok(dir),
        Ok(owner) => {
            let other = Path::new(std::ffi::OsStr::from_bytes(&owner));
            if other.is_dir() {
                return Err(io::Error::other(format!(
                    "{} belongs to {} as well as to {}; remove it to go on",
                    dir.display(),
                    other.display(),
                    git_dir.display()
                )));
            }
            // The other git dir is gone: its state is worth nothing.
            fs::remove_dir_all(&dir)?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    sweep(base);
    make_private(&dir)?;
    // Written whole under another name, then renamed: a sweep never reads half of it.
    let staging = dir.join(format!("{OWNER_FILE}.{}", std::process::id()));
    fs::write(&staging, git_dir.as_os_str().as_bytes())?;
    fs::rename(&staging, dir.join(OWNER_FILE))?;
    Ok(dir)
}

/// Remove the state dir of `git_dir` (`dbguard uninstall`); missing is fine.
pub(crate) fn remove(git_dir: &Path) -> io::Result<()> {
    let dir = state_dir(git_dir)?;
    fs::remove_dir_all(dir)
}

/// `$XDG_RUNTIME_DIR/dbguard-fsmonitor` when the runtime dir is the user's own, else
/// `/tmp/dbguard-fsmonitor-<uid>`; created, and checked to be private.
fn base_dir() -> io::Result<PathBuf> {
    let uid = this_user()?;
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && runtime.is_absolute()
        && fs::symlink_metadata(&runtime).is_ok_and(|m| is_private(&m, uid, 0o022))
    {
        let base = runtime.join(BASE_NAME);
        make_private(&base)?;
        return Ok(base);
    }
    let base = PathBuf::from(format!("/tmp/{BASE_NAME}-{uid}"));
    make_private(&base)?;
    Ok(base)
}

/// Create `dir` 0700 unless it exists, then refuse it unless it is a real directory of
/// this user's that no one else may enter.
fn make_private(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
        _ => {}
    }
    let metadata = fs::symlink_metadata(dir)?;
    let uid = this_user()?;
    if is_private(&metadata, uid, 0o077) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing {}: it must be a directory of user {uid} that no one else can use (mode 0700); remove it to have it made again",
            dir.display()
        ),
    ))
}

/// The effective user id: the owner of `/proc/self` (proc(5)), read without `unsafe`
/// (nix's `geteuid` is behind a feature the build leaves off).
fn this_user() -> io::Result<u32> {
    Ok(fs::metadata("/proc/self")?.uid())
}

/// A directory (not a symlink) owned by `uid`, with none of `forbidden`'s mode bits.
fn is_private(metadata: &fs::Metadata, uid: u32, forbidden: u32) -> bool {
    metadata.is_dir() && metadata.uid() == uid && metadata.mode() & forbidden == 0
}

/// Remove the state dirs whose git dir is gone (a test's repository, a deleted clone).
/// A state dir without its `gitdir` file yet is being made, and is left alone.
fn sweep(base: &Path) {
    let Ok(listing) = fs::read_dir(base) else {
        return;
    };
    for entry in listing.flatten() {
        let Ok(owner) = fs::read(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        if !Path::new(std::ffi::OsStr::from_bytes(&owner)).is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// 64-bit FNV-1a: stable across builds and Rust versions (the hook and the dbguard
/// that marks operations must find the same directory), and enough to tell apart the
/// git dirs of one user.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn one_private_dir_per_git_dir_and_the_gone_ones_are_swept() {
        let scratch = tempfile::tempdir().unwrap();
        let base = scratch.path().join("base");
        make_private(&base).unwrap();
        let (one, two) = (
            scratch.path().join("one/.git"),
            scratch.path().join("two/.git"),
        );
        fs::create_dir_all(&one).unwrap();
        fs::create_dir_all(&two).unwrap();
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(scratch.path().join("one"), &link).unwrap();

        let state_one = state_dir_in(&base, &one).unwrap();
        assert_eq!(state_dir_in(&base, &link.join(".git")).unwrap(), state_one);
        assert!(state_one.starts_with(&base));
        let mode = fs::metadata(&state_one).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::write(state_one.join("snapshot"), "x").unwrap();

        fs::remove_dir_all(scratch.path().join("one")).unwrap();
        let state_two = state_dir_in(&base, &two).unwrap();
        assert_ne!(state_two, state_one);
        assert!(
            !state_one.exists(),
            "the state of a removed git dir is swept"
        );
        assert!(state_two.exists());
    }

    #[test]
    fn a_shared_or_linked_directory_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let open = scratch.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = make_private(&open).unwrap_err();
        assert!(error.to_string().contains("refusing"), "{error}");

        let private = scratch.path().join("private");
        make_private(&private).unwrap();
        let link = scratch.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(make_private(&link).is_err(), "a symlink is not followed");
    }
}
