//! An encrypted remote's keys: unlocking it with a key file or passphrase before any
//! transfer, a new key for a new remote, more passphrases and key files for the same
//! key, and converting an unencrypted remote (its objects copied sealed, then, only when
//! asked, the plain ones deleted).

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bytes::Bytes;

use super::crypto::{KEYS_DIR, KeyRecord, RepoKey, new_record_name};
use super::{Client, RemoteError, RemoteSpec, secrets};

/// Where the replica's objects live (`store/replica/`): what conversion copies and what
/// tells an unencrypted remote with copies from an empty one.
const STORES_DIR: &str = "stores";

/// The key records on the remote, by object name; unreadable ones are left out.
fn records(client: &Client) -> Result<Vec<(String, KeyRecord)>, RemoteError> {
    let plain = client.unkeyed();
    let mut found = Vec::new();
    for object in plain.list(KEYS_DIR)? {
        if let Some(record) = KeyRecord::parse(&plain.get(&object.name)?) {
            found.push((object.name, record));
        }
    }
    Ok(found)
}

fn read_key_file(path: &Path) -> Result<RepoKey, RemoteError> {
    let text = std::fs::read_to_string(path).map_err(|e| RemoteError::KeyFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    RepoKey::from_key_file(&text).map_err(|why| RemoteError::KeyFile {
        path: path.to_path_buf(),
        why,
    })
}

/// Write a new key file (never over an existing file), readable by its owner only.
pub(crate) fn write_key_file(path: &Path, key: &RepoKey) -> Result<(), RemoteError> {
    let fail = |e: std::io::Error| RemoteError::KeyFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(key.to_key_file().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(fail)
}

/// How an encrypted remote was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Not encrypted: nothing under `keys/` and not set up as encrypted.
    Plain,
    /// By the key file at this path.
    KeyFile(String),
    /// By the passphrase of this key record.
    Passphrase(String),
}

/// Give `client` its remote's key before anything is read or written: from the key
/// file, else the passphrase (file, command, else `ask`: the terminal, or `None`).
/// Every failure leaves the remote and the store as they were.
pub(crate) fn unlock(
    client: &mut Client,
    spec: &RemoteSpec,
    ask: &dyn Fn() -> Option<String>,
) -> Result<Opened, RemoteError> {
    let url = spec.url.to_string();
    let records = records(client)?;
    if records.is_empty() {
        if spec.encrypted {
            return Err(RemoteError::KeysGone { url });
        }
        return Ok(Opened::Plain);
    }
    if let Some(path) = secrets::key_file(spec) {
        let key = read_key_file(&path)?;
        if !records.iter().any(|(_, record)| record.matches(&key)) {
            return Err(RemoteError::WrongKey {
                url,
                what: format!("the key file {}", path.display()),
            });
        }
        client.use_key(key);
        return Ok(Opened::KeyFile(path.display().to_string()));
    }
    let passphrase = secrets::passphrase(spec)
        .map_err(|why| RemoteError::Locked {
            url: url.clone(),
            why,
        })?
        .or_else(ask)
        .ok_or_else(|| RemoteError::Locked {
            url: url.clone(),
            why: "no passphrase or key file was given".into(),
        })?;
    for (name, record) in &records {
        if let Some(key) = record.unwrap_with(&passphrase) {
            client.use_key(key);
            return Ok(Opened::Passphrase(name.clone()));
        }
    }
    Err(RemoteError::WrongKey {
        url,
        what: "the passphrase".into(),
    })
}

/// Whether the remote has key records (is encrypted).
pub(crate) fn has_keys(client: &Client) -> Result<bool, RemoteError> {
    Ok(!client.unkeyed().list(KEYS_DIR)?.is_empty())
}

/// Whether the remote holds objects of an unencrypted push.
pub(crate) fn holds_plain_copies(client: &Client) -> Result<bool, RemoteError> {
    Ok(!client.unkeyed().list(STORES_DIR)?.is_empty())
}

/// A new key for a remote without one: the key in `key_file` when that file exists
/// (another remote's, exported), else a new one (written to `key_file` when named);
/// wrapped by `passphrase` and marked for the key file. At least one must be given.
pub(crate) fn set_up(
    client: &mut Client,
    passphrase: Option<&str>,
    key_file: Option<&Path>,
) -> Result<(), RemoteError> {
    let key = match key_file {
        Some(path) if path.exists() => read_key_file(path)?,
        Some(path) => {
            let key = RepoKey::generate();
            write_key_file(path, &key)?;
            key
        }
        None => RepoKey::generate(),
    };
    let plain = client.unkeyed();
    if let Some(passphrase) = passphrase {
        let record = KeyRecord::with_passphrase(&key, passphrase);
        plain.put_new(&new_record_name(), Bytes::from(record.to_json()))?;
    }
    if key_file.is_some() {
        let record = KeyRecord::for_key_file(&key);
        plain.put_new(&new_record_name(), Bytes::from(record.to_json()))?;
    }
    client.use_key(key);
    Ok(())
}

fn unlocked_key<'a>(client: &'a Client, url: &str) -> Result<&'a RepoKey, RemoteError> {
    client.key().ok_or_else(|| RemoteError::Other {
        url: url.to_string(),
        detail: "the remote is not encrypted (`dbguard remote encrypt NAME` converts it)".into(),
    })
}

/// Another passphrase for the unlocked remote's key; returns its record's name.
pub(crate) fn add_passphrase(
    client: &Client,
    url: &str,
    passphrase: &str,
) -> Result<String, RemoteError> {
    let record = KeyRecord::with_passphrase(unlocked_key(client, url)?, passphrase);
    let name = new_record_name();
    client
        .unkeyed()
        .put_new(&name, Bytes::from(record.to_json()))?;
    Ok(name)
}

/// Write the unlocked remote's key to a new key file, and mark it on the remote.
pub(crate) fn export_key_file(client: &Client, url: &str, path: &Path) -> Result<(), RemoteError> {
    let key = unlocked_key(client, url)?;
    write_key_file(path, key)?;
    let record = KeyRecord::for_key_file(key);
    client
        .unkeyed()
        .put_new(&new_record_name(), Bytes::from(record.to_json()))?;
    Ok(())
}

/// Delete a key record (a changed passphrase's old one).
pub(crate) fn remove_record(client: &Client, name: &str) -> Result<(), RemoteError> {
    client.unkeyed().delete(name)
}

/// What converting a remote did.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    pub(crate) copied: usize,
    pub(crate) already: usize,
    pub(crate) bytes: u64,
    pub(crate) removed: usize,
}

/// Copy every unencrypted object to its sealed form (those already copied are skipped:
/// it resumes), then, with `remove_plain`, delete the plain ones, each only once its
/// sealed copy reads back.
pub(crate) fn convert(
    client: &Client,
    url: &str,
    remove_plain: bool,
) -> Result<Converted, RemoteError> {
    unlocked_key(client, url)?;
    let plain = client.unkeyed();
    let originals = plain.list(STORES_DIR)?;
    let sealed: HashSet<String> = client
        .list(STORES_DIR)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut report = Converted::default();
    for object in &originals {
        if sealed.contains(&object.name) {
            report.already += 1;
            continue;
        }
        let bytes = plain.get(&object.name)?;
        report.bytes += bytes.len() as u64;
        client.put_new(&object.name, bytes)?;
        report.copied += 1;
    }
    if remove_plain {
        for object in &originals {
            let copy = client.get(&object.name)?;
            if copy.len() as u64 != object.size {
                return Err(RemoteError::Other {
                    url: url.to_string(),
                    detail: format!(
                        "the encrypted copy of {} differs from the original: it was kept",
                        object.name
                    ),
                });
            }
            plain.delete(&object.name)?;
            report.removed += 1;
        }
    }
    Ok(report)
}
