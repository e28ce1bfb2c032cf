//! Where an encrypted remote's passphrase or key file comes from, without a terminal:
//! `DBGUARD_KEY_FILE` or the remote's `keyFile` setting (a key file); else
//! `DBGUARD_PASSWORD_FILE` (the file's first line); else `DBGUARD_PASSWORD_COMMAND` or the
//! remote's `passwordCommand` setting (run by `sh -c`, its first line of output: a
//! password manager for cron). Asking on a terminal is the caller's (flow) business.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::RemoteSpec;
use super::credentials::env;

pub(crate) const KEY_FILE_VAR: &str = "DBGUARD_KEY_FILE";
pub(crate) const PASSWORD_FILE_VAR: &str = "DBGUARD_PASSWORD_FILE";
pub(crate) const PASSWORD_COMMAND_VAR: &str = "DBGUARD_PASSWORD_COMMAND";
/// The new passphrase of `dbguard remote key add|passwd` without a terminal.
pub(crate) const NEW_PASSWORD_FILE_VAR: &str = "DBGUARD_NEW_PASSWORD_FILE";

/// The key file to use for `spec`, if one is named.
pub(crate) fn key_file(spec: &RemoteSpec) -> Option<PathBuf> {
    env(KEY_FILE_VAR)
        .map(PathBuf::from)
        .or_else(|| spec.key_file.clone())
}

/// Whether `spec`'s key can be opened with nobody to type a passphrase (git hooks'
/// background pushes, cron): a key file, a passphrase file or a password command, from
/// the remote's settings or this environment. Always for an unencrypted remote.
pub(crate) fn opens_unattended(spec: &RemoteSpec) -> bool {
    !spec.encrypted
        || key_file(spec).is_some()
        || spec.password_command.is_some()
        || env(PASSWORD_FILE_VAR).is_some()
        || env(PASSWORD_COMMAND_VAR).is_some()
}

/// The first line of a passphrase file or command's output, without its line end.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// A passphrase from a file named by `var`: `Ok(None)` when the variable is unset.
pub(crate) fn passphrase_from_file(var: &str) -> Result<Option<String>, String> {
    let Some(path) = env(var) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {var}={path}: {e}"))?;
    let line = first_line(&text);
    if line.is_empty() {
        return Err(format!("{var}={path} holds an empty passphrase"));
    }
    Ok(Some(line))
}

/// The passphrase from `DBGUARD_PASSWORD_FILE` or the password command, when either is
/// set; `Err` when one is set and fails.
pub(crate) fn passphrase(spec: &RemoteSpec) -> Result<Option<String>, String> {
    if let Some(found) = passphrase_from_file(PASSWORD_FILE_VAR)? {
        return Ok(Some(found));
    }
    let Some(command) = env(PASSWORD_COMMAND_VAR).or_else(|| spec.password_command.clone()) else {
        return Ok(None);
    };
    let output = Command::new("sh")
        .args(["-c", &command])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the password command `{command}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the password command `{command}` failed ({})",
            output.status
        ));
    }
    let line = first_line(&String::from_utf8_lossy(&output.stdout));
    if line.is_empty() {
        return Err(format!("the password command `{command}` printed nothing"));
    }
    Ok(Some(line))
}
