//! Remote object storage for copies of the store: a remote's address (`s3://bucket/prefix`
//! on AWS or an S3-compatible server, `file:///path` on another disk or NFS), its
//! settings from git config, and a blocking client over the `object_store` crate that
//! turns every failure into a [`RemoteError`] a user can act on; an encrypted remote's
//! key and how every object is sealed (`crypto.rs`, `keys.rs`). What is stored there
//! and in which order is the store's business (`store/replica/`).

mod client;
pub(crate) mod credentials;
pub(crate) mod crypto;
pub(crate) mod keys;
pub(crate) mod secrets;

pub(crate) use client::{Bucket, Client, ObjectInfo, PutOutcome};

use std::path::PathBuf;

/// Where a remote is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteUrl {
    S3 { bucket: String, prefix: String },
    File { path: PathBuf },
}

impl RemoteUrl {
    /// Parse `s3://bucket[/prefix]` or `file:///absolute/path`. Credentials in the URL
    /// are refused: they would land in git config, where anyone reading it sees them.
    pub(crate) fn parse(text: &str) -> Result<RemoteUrl, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.contains('@') || bucket.contains(':') {
                return Err(
                    "credentials do not belong in the URL (they would be stored in git config); \
                     set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use ~/.aws/credentials"
                        .into(),
                );
            }
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(format!(
                    "`{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, `-`, `.`)"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == ".." || part == ".") {
                return Err("the prefix may not contain `.` or `..`".into());
            }
            return Ok(RemoteUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("a file URL needs an absolute path: file:///mnt/backup/dbguard".into());
            }
            return Ok(RemoteUrl::File {
                path: PathBuf::from(path),
            });
        }
        Err(format!(
            "`{text}` is not a remote URL: use s3://bucket/prefix or file:///absolute/path"
        ))
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteUrl::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// A configured remote: `git config dbguard.remote.<name>.url` and its companions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RemoteSpec {
    pub(crate) name: String,
    #[serde(serialize_with = "display")]
    pub(crate) url: RemoteUrl,
    /// An S3-compatible server's address (`http://127.0.0.1:8333`); AWS when unset.
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    /// The AWS profile whose credentials to use (`AWS_PROFILE` overrides it).
    pub(crate) profile: Option<String>,
    /// `dbguard.remote.<name>.encrypted`: set by `remote add` (the default) and `remote
    /// encrypt`; such a remote without keys is refused, never written in plain.
    #[serde(skip)]
    pub(crate) encrypted: bool,
    /// `dbguard.remote.<name>.keyFile`: a key file that opens it (`DBGUARD_KEY_FILE`
    /// overrides it).
    #[serde(skip)]
    pub(crate) key_file: Option<PathBuf>,
    /// `dbguard.remote.<name>.passwordCommand`: prints its passphrase (for cron).
    #[serde(skip)]
    pub(crate) password_command: Option<String>,
}

fn display<S: serde::Serializer>(url: &RemoteUrl, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&url.to_string())
}

/// A remote name as git config can hold it and a user can type it.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-')
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoteError {
    #[error("{url}: no credentials found")]
    NoCredentials { url: String },
    #[error("{url}: cannot reach {endpoint} ({detail})")]
    Unreachable {
        url: String,
        endpoint: String,
        detail: String,
    },
    #[error("{url}: the server refused the credentials ({source_of})")]
    Refused { url: String, source_of: String },
    #[error("{url}: the bucket `{bucket}` does not exist")]
    NoBucket { url: String, bucket: String },
    #[error("{url}: {name} is missing")]
    Missing { url: String, name: String },
    #[error("{url}: cannot use {path}: {detail}")]
    Local {
        url: String,
        path: PathBuf,
        detail: String,
    },
    #[error("{url}: the server failed ({detail})")]
    ServerFailed { url: String, detail: String },
    #[error("{url}: {detail}")]
    Other { url: String, detail: String },
    /// An object larger than dbguard ever writes one (damaged, or not dbguard's).
    #[error("{url}: {name} is larger than {limit} bytes, more than dbguard ever writes")]
    TooLarge {
        url: String,
        name: String,
        limit: u64,
    },
    #[error("{url}: the remote is encrypted and {why}")]
    Locked { url: String, why: String },
    #[error("{url}: {what} does not open this remote's key")]
    WrongKey { url: String, what: String },
    #[error("{url}: the remote should be encrypted but holds no key (nothing under keys/)")]
    KeysGone { url: String },
    /// An object of an encrypted remote that its key does not open.
    #[error("{url}: {name} does not open with the remote's key: it was changed or damaged")]
    Undecryptable { url: String, name: String },
    #[error("{url}: the remote holds copies that are not encrypted")]
    HoldsPlaintext { url: String },
    #[error("cannot use the key file {path}: {why}")]
    KeyFile { path: PathBuf, why: String },
}

impl RemoteError {
    /// What to do about it, for the command's error.
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            RemoteError::NoCredentials { .. } => Some(
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them in ~/.aws/credentials \
                 (`dbguard remote add NAME URL --profile P` picks a profile)"
                    .into(),
            ),
            RemoteError::Unreachable { .. } => Some(
                "check the address (`dbguard remote list`; `--endpoint` for an S3-compatible \
                 server) and that the server is running"
                    .into(),
            ),
            RemoteError::Refused { .. } => Some(
                "check the access key and secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or \
                 ~/.aws/credentials) and that they may read and write the bucket"
                    .into(),
            ),
            RemoteError::NoBucket { bucket, .. } => Some(format!(
                "create the bucket `{bucket}` on the server first (dbguard does not create buckets)"
            )),
            RemoteError::Missing { .. } => {
                Some("`dbguard verify --remote NAME` checks the whole remote".into())
            }
            RemoteError::ServerFailed { .. } => Some(
                "the server answered with an internal error (still starting, overloaded or \
                 out of space?); try again later: pushes and fetches resume where they stopped"
                    .into(),
            ),
            RemoteError::TooLarge { .. } => Some(
                "the remote's copy is damaged or was not written by dbguard; nothing of it was \
                 kept (`dbguard verify --remote NAME` checks the whole remote)"
                    .into(),
            ),
            RemoteError::Locked { .. } => Some(format!(
                "give its passphrase on a terminal, in a file named by {}, or by a command \
                 (git config dbguard.remote.NAME.passwordCommand); or its key file ({}). \
                 Without them the remote's copies cannot be read",
                secrets::PASSWORD_FILE_VAR,
                secrets::KEY_FILE_VAR
            )),
            RemoteError::WrongKey { .. } => Some(
                "nothing was changed; use a passphrase or key file of this remote \
                 (`dbguard remote key add` adds one, given one that works)"
                    .into(),
            ),
            RemoteError::KeysGone { .. } => Some(
                "check the URL and prefix (`dbguard remote list`); if its keys were deleted, \
                 its copies cannot be read any more: add a new remote"
                    .into(),
            ),
            RemoteError::Undecryptable { .. } => Some(
                "nothing of it was kept; `dbguard verify --remote NAME` checks the whole remote"
                    .into(),
            ),
            RemoteError::HoldsPlaintext { .. } => Some(
                "add it with --no-encryption, then `dbguard remote encrypt NAME` converts it".into(),
            ),
            RemoteError::Local { .. } | RemoteError::Other { .. } | RemoteError::KeyFile { .. } => {
                None
            }
        }
    }

    pub(crate) fn is_missing(&self) -> bool {
        matches!(self, RemoteError::Missing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        assert_eq!(
            RemoteUrl::parse("s3://my-bucket/team/proj/").unwrap(),
            RemoteUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/proj".into()
            }
        );
        assert_eq!(
            RemoteUrl::parse("s3://my-bucket").unwrap().to_string(),
            "s3://my-bucket"
        );
        assert_eq!(
            RemoteUrl::parse("file:///mnt/backup").unwrap(),
            RemoteUrl::File {
                path: "/mnt/backup".into()
            }
        );
        let secret = RemoteUrl::parse("s3://AKID:secret@bucket/x").unwrap_err();
        assert!(secret.contains("credentials do not belong"), "{secret}");
        assert!(RemoteUrl::parse("file://relative").is_err());
        assert!(RemoteUrl::parse("https://example.com").is_err());
        assert!(RemoteUrl::parse("s3://Bad_Bucket").is_err());
        assert!(RemoteUrl::parse("s3://bucket/../x").is_err());
        assert!(valid_name("backup-1") && !valid_name("a b") && !valid_name("-x"));
    }
}
