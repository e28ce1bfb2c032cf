//! Staging: the complete, fsynced copy of the image that waits next to the destination
//! under a private name until one rename puts it in place, and the cleanup of staging
//! files that killed restores left behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::RestoreError;
use crate::scan::{restore_staging_name, restore_staging_pid};

/// Put a complete, fsynced copy of the verified image next to `dest`, under the staging
/// name, and return that path. Nothing at `dest` or its sidecars is touched: a failure
/// here (a full disk above all) leaves the live database exactly as it was.
pub(super) fn stage(image: &Path, dest: &Path, mode: u32) -> Result<PathBuf, RestoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| RestoreError::Io {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let staged = dir.join(restore_staging_name(&name, std::process::id()));
    let _ = fs::remove_file(&staged);
    let result = (|| {
        // Within one filesystem a hard link costs nothing; across filesystems (a store on
        // another disk) the image is copied, which is where a full disk shows up.
        if fs::hard_link(image, &staged).is_err() {
            fs::copy(image, &staged)?;
        }
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode))?;
        fs::File::open(&staged)?.sync_all()
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&staged);
        return Err(RestoreError::Io {
            action: "write",
            path: dest.to_path_buf(),
            source,
        });
    }
    Ok(staged)
}

/// Remove staging files that killed restores left next to `dest`
/// (`.<name>.dbguard-restore-<pid>` whose process is gone).
pub(super) fn remove_stale_staging(dest: &Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = restore_staging_pid(file_name) else {
            continue;
        };
        // A live pid may be another restore staging right now: leave its file alone.
        if file_name == restore_staging_name(name, pid)
            && pid != own
            && !Path::new("/proc").join(pid.to_string()).exists()
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The permission bits of the file at `path` (0644 when there is none): the restored file
/// takes the place of that one with the same mode.
pub(super) fn file_mode(path: &Path) -> u32 {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644)
}

/// The process umask, from `/proc/self/status` (reading it through umask(2) would mean
/// setting it, for every thread). 022, the usual default, when it cannot be read.
pub(super) fn process_umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
