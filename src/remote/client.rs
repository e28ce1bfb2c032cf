//! A blocking client for one remote: the `object_store` crate's S3 or local-filesystem
//! store under the remote's prefix, run on a small tokio runtime of its own, with short
//! retries (a dead server fails in seconds, not minutes) and every failure classified
//! into a [`RemoteError`]. [`Client::parallel`] runs many transfers at once.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use super::credentials;
use super::crypto::{RepoKey, SEAL_OVERHEAD};
use super::{RemoteError, RemoteSpec, RemoteUrl};

/// Transfers in flight at once: enough to hide a round trip per object on a fast link,
/// few enough that 8 MiB packs in memory stay small.
const PARALLEL_TRANSFERS: usize = 4;

/// One object under the remote's prefix.
#[derive(Debug, Clone)]
pub(crate) struct ObjectInfo {
    /// Relative to the remote's prefix, `/`-separated.
    pub(crate) name: String,
    pub(crate) size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    Created,
    /// An object of that name was there already (a conditional write refused to replace
    /// it, or the server said so before we wrote).
    AlreadyThere,
}

/// What every error message names: the remote and where it is.
#[derive(Debug)]
struct Where {
    url: String,
    endpoint: String,
    bucket: String,
}

/// The remote's objects, cheap to clone into concurrent transfers.
#[derive(Clone)]
pub(crate) struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    place: Arc<Where>,
    /// A `file://` remote's directory: its objects get the store's private modes.
    local_root: Option<Arc<std::path::PathBuf>>,
    /// An encrypted remote's key: objects are sealed and their names hidden
    /// (`crypto.rs`); `None` for an unencrypted remote and for the key records.
    key: Option<Arc<RepoKey>>,
}

/// Before a `file://` remote's object is written: the directories it goes into are
/// private (0700, as in the store; object_store would make them with the umask's 0755),
/// so nobody else can open the file while object_store writes it with the umask's mode.
fn private_dirs_for(root: &Path, name: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() && meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After a `file://` remote's object is written: 0600, as the store's files are.
fn private_file(root: &Path, name: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o600))
}

/// A remote, ready for transfers.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    bucket: Bucket,
}

/// reqwest is built without a TLS crypto provider of its own (aws-lc would add a C
/// build): ring is installed as the process's provider before the first connection.
fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The whole chain of an error on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Bucket {
    /// Where the object `name` is stored: under the prefix, its name hidden on an
    /// encrypted remote.
    fn path(&self, name: &str) -> ObjectPath {
        let stored = match &self.key {
            Some(key) => key.hide(name),
            None => name.to_string(),
        };
        let mut path = self.prefix.clone().unwrap_or_default();
        for part in stored.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    /// The name of a stored object; `None` on an encrypted remote for what its key
    /// did not hide (key records, leftovers of an unencrypted push).
    fn relative(&self, location: &ObjectPath) -> Option<String> {
        let full = location.as_ref();
        let stored = match &self.prefix {
            Some(prefix) => full
                .strip_prefix(prefix.as_ref())
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_string(),
            None => full.to_string(),
        };
        match &self.key {
            Some(key) => key.reveal(&stored),
            None => Some(stored),
        }
    }

    /// The bytes stored for `name`: sealed on an encrypted remote.
    fn sealed(&self, name: &str, bytes: Bytes) -> Bytes {
        match &self.key {
            Some(key) => Bytes::from(key.seal(name, &bytes)),
            None => bytes,
        }
    }

    /// The plain bytes of `name` as stored; on an encrypted remote, an object that
    /// does not open with the key is [`RemoteError::Undecryptable`].
    fn opened(&self, name: &str, bytes: Bytes) -> Result<Bytes, RemoteError> {
        match &self.key {
            Some(key) => {
                key.open(name, &bytes)
                    .map(Bytes::from)
                    .ok_or_else(|| RemoteError::Undecryptable {
                        url: self.place.url.clone(),
                        name: name.to_string(),
                    })
            }
            None => Ok(bytes),
        }
    }

    /// This bucket without its key: the key records, and an unencrypted remote's
    /// objects while it is converted.
    pub(crate) fn unkeyed(&self) -> Bucket {
        Bucket {
            key: None,
            ..self.clone()
        }
    }

    fn classify(&self, error: object_store::Error, name: &str) -> RemoteError {
        let place = &self.place;
        let url = place.url.clone();
        let text = chain(&error);
        let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if has(&["NoSuchBucket", "bucket does not exist", "Bucket not found"]) {
            return RemoteError::NoBucket {
                url,
                bucket: place.bucket.clone(),
            };
        }
        match error {
            object_store::Error::NotFound { .. } => RemoteError::Missing {
                url,
                name: name.to_string(),
            },
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => RemoteError::Refused {
                url,
                source_of: gist(&text),
            },
            _ if has(&[
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403 Forbidden",
            ]) =>
            {
                RemoteError::Refused {
                    url,
                    source_of: gist(&text),
                }
            }
            _ if has(&[
                "error sending request",
                "Connection refused",
                "connection refused",
                "dns error",
                "tcp connect",
                "timed out",
                "connection closed",
                "Connection reset",
            ]) =>
            {
                RemoteError::Unreachable {
                    url,
                    endpoint: place.endpoint.clone(),
                    detail: gist(&text),
                }
            }
            _ if has(&["status code: 5"]) => RemoteError::ServerFailed {
                url,
                detail: gist(&text),
            },
            _ => RemoteError::Other {
                url,
                detail: short(&text),
            },
        }
    }

    /// Runs `write` (a put of `name`) with the `file://` remote's modes made private
    /// around it; other remotes keep their own access control.
    async fn privately<T>(
        &self,
        name: &str,
        write: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let Some(root) = self.local_root.as_deref() else {
            return write.await;
        };
        let local = |e: std::io::Error| RemoteError::Local {
            url: self.place.url.clone(),
            path: root.join(name),
            detail: e.to_string(),
        };
        private_dirs_for(root, name).map_err(local)?;
        let written = write.await?;
        match private_file(root, name) {
            // Another writer's object of the same name was there (put_new): not ours.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.map_err(local)?,
        }
        Ok(written)
    }

    /// Write `name` only if nothing is there yet.
    pub(crate) async fn put_new(
        &self,
        name: &str,
        bytes: Bytes,
    ) -> Result<PutOutcome, RemoteError> {
        self.privately(name, self.put_new_as_is(name, bytes)).await
    }

    async fn put_new_as_is(&self, name: &str, bytes: Bytes) -> Result<PutOutcome, RemoteError> {
        let path = self.path(name);
        let bytes = self.sealed(name, bytes);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(bytes.clone()), options)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyThere),
            // A server without conditional writes: look first (two writers of the same
            // name write the same bytes: names are content hashes or per-store ids).
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                match self.store.head(&path).await {
                    Ok(_) => return Ok(PutOutcome::AlreadyThere),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.classify(e, name)),
                }
                self.store
                    .put(&path, PutPayload::from_bytes(bytes))
                    .await
                    .map(|_| PutOutcome::Created)
                    .map_err(|e| self.classify(e, name))
            }
            Err(e) => Err(self.classify(e, name)),
        }
    }

    /// Write `name`, replacing what is there (only in this store's own space: the owner
    /// record when its owner moved, a damaged copy of a pack).
    pub(crate) async fn replace(&self, name: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let bytes = self.sealed(name, bytes);
        let put = async {
            self.store
                .put(&self.path(name), PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.classify(e, name))
        };
        self.privately(name, put).await
    }

    /// Copy `from` to `to` on the remote itself: no byte goes through this machine (a
    /// pack another store in the same place sent already). Only for content-named
    /// objects, where an object already at `to` holds the same bytes.
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        let copy = async {
            self.store
                .copy(&self.path(from), &self.path(to))
                .await
                .map_err(|e| self.classify(e, to))
        };
        self.privately(to, copy).await
    }

    pub(crate) async fn get(&self, name: &str) -> Result<Bytes, RemoteError> {
        let result = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.classify(e, name))?;
        let bytes = result.bytes().await.map_err(|e| self.classify(e, name))?;
        self.opened(name, bytes)
    }

    /// [`Bucket::get`] of an object that may hold at most `limit` bytes: a larger one
    /// (by the server's word, or by what it sends) is [`RemoteError::TooLarge`], and no
    /// more than `limit` bytes of it are ever held in memory.
    pub(crate) async fn get_at_most(&self, name: &str, limit: u64) -> Result<Bytes, RemoteError> {
        let too_large = || RemoteError::TooLarge {
            url: self.place.url.clone(),
            name: name.to_string(),
            limit,
        };
        let limit = if self.key.is_some() {
            limit + SEAL_OVERHEAD
        } else {
            limit
        };
        let result = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.classify(e, name))?;
        if result.meta.size > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(result.meta.size as usize);
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(e, name))?;
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        self.opened(name, Bytes::from(bytes))
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), RemoteError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify(e, name)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, RemoteError> {
        let prefix = self.path(dir);
        let mut listing = self.store.list(Some(&prefix));
        let mut objects = Vec::new();
        while let Some(item) = listing.next().await {
            match item {
                Ok(meta) => {
                    let Some(name) = self.relative(&meta.location) else {
                        continue;
                    };
                    // The plain size: what push compares with the local pack's.
                    let size = match &self.key {
                        Some(_) => meta.size.saturating_sub(SEAL_OVERHEAD),
                        None => meta.size,
                    };
                    objects.push(ObjectInfo { name, size });
                }
                // An empty local directory that does not exist yet lists as nothing.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.classify(e, dir)),
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
}

/// What a user needs of an object_store error, in a few words: the S3 error code and
/// HTTP status when the server answered (`SignatureDoesNotMatch, HTTP 403`), else the
/// innermost cause (`tcp connect error: Connection refused (os error 111)`).
fn gist(text: &str) -> String {
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim());
    let status = text
        .split_once("status code: ")
        .map(|(_, rest)| rest.split(':').next().unwrap_or(rest).trim());
    match (code, status) {
        (Some(code), Some(status)) => format!("{code}, HTTP {status}"),
        (Some(code), None) => code.to_string(),
        _ => {
            // The chain reads outermost first; its last two parts name the cause.
            let parts: Vec<&str> = text.split(": ").collect();
            short(&parts[parts.len().saturating_sub(2)..].join(": "))
        }
    }
}

/// One line, at most 300 characters: object_store's messages can carry a whole XML body.
fn short(text: &str) -> String {
    let mut line: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        line.push('…');
    }
    line
}

impl Client {
    /// A client for `spec`. `create` makes a `file://` remote's directory when missing
    /// (push); reading commands refuse a missing one.
    pub(crate) fn connect(spec: &RemoteSpec, create: bool) -> Result<Client, RemoteError> {
        let url = spec.url.to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Other {
                url: url.clone(),
                detail: format!("cannot start the network runtime: {e}"),
            })?;
        let (store, prefix, place): (Arc<dyn ObjectStore>, Option<ObjectPath>, Where) = match &spec
            .url
        {
            RemoteUrl::File { path } => {
                let local = |detail: String| RemoteError::Local {
                    url: url.clone(),
                    path: path.clone(),
                    detail,
                };
                if create {
                    // Private like the store itself (0700): the objects below it are
                    // written with the umask's modes, and hold the databases' rows.
                    std::os::unix::fs::DirBuilderExt::mode(
                        std::fs::DirBuilder::new().recursive(true),
                        0o700,
                    )
                    .create(path)
                    .map_err(|e| local(e.to_string()))?;
                } else if !path.is_dir() {
                    return Err(local("no such directory".into()));
                }
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| local(chain(&e)))?
                    .with_fsync(true);
                (
                    Arc::new(store),
                    None,
                    Where {
                        url: url.clone(),
                        endpoint: path.display().to_string(),
                        bucket: String::new(),
                    },
                )
            }
            RemoteUrl::S3 { bucket, prefix } => {
                install_tls_provider();
                let aws = credentials::resolve(spec.profile.as_deref());
                let endpoint = spec.endpoint.clone().or(aws.endpoint.clone());
                let Some(credentials) = aws.credentials else {
                    return Err(RemoteError::NoCredentials { url });
                };
                let region = spec
                    .region
                    .clone()
                    .or(aws.region)
                    .unwrap_or_else(|| "us-east-1".into());
                let mut options = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120));
                if endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
                {
                    options = options.with_allow_http(true);
                }
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&region)
                    .with_access_key_id(&credentials.access_key_id)
                    .with_secret_access_key(&credentials.secret_access_key)
                    .with_conditional_put(S3ConditionalPut::ETagMatch)
                    .with_client_options(options)
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig {
                            init_backoff: Duration::from_millis(100),
                            max_backoff: Duration::from_secs(2),
                            base: 2.0,
                        },
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                    });
                if let Some(token) = &credentials.session_token {
                    builder = builder.with_token(token);
                }
                if let Some(endpoint) = &endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                let store = builder.build().map_err(|e| RemoteError::Other {
                    url: url.clone(),
                    detail: short(&chain(&e)),
                })?;
                let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
                (
                    Arc::new(store),
                    prefix,
                    Where {
                        url: url.clone(),
                        endpoint: endpoint.unwrap_or_else(|| format!("s3.{region}.amazonaws.com")),
                        bucket: bucket.clone(),
                    },
                )
            }
        };
        Ok(Client {
            runtime,
            bucket: Bucket {
                store,
                prefix,
                place: Arc::new(place),
                local_root: match &spec.url {
                    RemoteUrl::File { path } => Some(Arc::new(path.clone())),
                    RemoteUrl::S3 { .. } => None,
                },
                key: None,
            },
        })
    }

    /// From now on, seal and hide everything with `key` (`keys.rs` unlocks it).
    pub(crate) fn use_key(&mut self, key: RepoKey) {
        self.bucket.key = Some(Arc::new(key));
    }

    /// Whether objects are sealed: an encrypted remote is append-only for push.
    pub(crate) fn is_encrypted(&self) -> bool {
        self.bucket.key.is_some()
    }

    /// The remote's key, for `dbguard remote key export|add`.
    pub(crate) fn key(&self) -> Option<&RepoKey> {
        self.bucket.key.as_deref()
    }

    /// The same remote without the key: plain names and bytes.
    pub(crate) fn unkeyed(&self) -> UnkeyedClient<'_> {
        UnkeyedClient {
            client: self,
            bucket: self.bucket.unkeyed(),
        }
    }

    /// Every object whose name starts with `dir/`.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, RemoteError> {
        self.runtime.block_on(self.bucket.list(dir))
    }

    pub(crate) fn get(&self, name: &str) -> Result<Bytes, RemoteError> {
        self.runtime.block_on(self.bucket.get(name))
    }

    pub(crate) fn put_new(&self, name: &str, bytes: Bytes) -> Result<PutOutcome, RemoteError> {
        self.runtime.block_on(self.bucket.put_new(name, bytes))
    }

    pub(crate) fn replace(&self, name: &str, bytes: Bytes) -> Result<(), RemoteError> {
        self.runtime.block_on(self.bucket.replace(name, bytes))
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), RemoteError> {
        self.runtime.block_on(self.bucket.delete(name))
    }

    /// Run `task` for every item, [`PARALLEL_TRANSFERS`] at a time; `done` sees each
    /// result as it arrives (on this thread). Stops starting new tasks after the first
    /// error and returns it once the tasks in flight have finished.
    pub(crate) fn parallel<T, R, F, Fut>(
        &self,
        items: Vec<T>,
        task: F,
        mut done: impl FnMut(&R),
    ) -> Result<Vec<R>, RemoteError>
    where
        F: Fn(Bucket, T) -> Fut,
        Fut: Future<Output = Result<R, RemoteError>>,
    {
        self.runtime.block_on(async {
            let mut results = Vec::with_capacity(items.len());
            let mut first_error = None;
            let mut stream = futures::stream::iter(items)
                .map(|item| task(self.bucket.clone(), item))
                .buffer_unordered(PARALLEL_TRANSFERS);
            while let Some(result) = stream.next().await {
                match result {
                    Ok(value) => {
                        done(&value);
                        results.push(value);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(results),
            }
        })
    }
}

/// A [`Client`]'s remote with names and bytes as they are stored: the key records, and
/// an unencrypted remote's objects while it is converted.
pub(crate) struct UnkeyedClient<'a> {
    client: &'a Client,
    bucket: Bucket,
}

impl UnkeyedClient<'_> {
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, RemoteError> {
        self.client.runtime.block_on(self.bucket.list(dir))
    }

    pub(crate) fn get(&self, name: &str) -> Result<Bytes, RemoteError> {
        self.client.runtime.block_on(self.bucket.get(name))
    }

    pub(crate) fn put_new(&self, name: &str, bytes: Bytes) -> Result<PutOutcome, RemoteError> {
        self.client
            .runtime
            .block_on(self.bucket.put_new(name, bytes))
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), RemoteError> {
        self.client.runtime.block_on(self.bucket.delete(name))
    }
}

#[cfg(test)]
mod tests {
    use super::gist;

    #[test]
    fn errors_shrink_to_the_code_or_the_innermost_cause() {
        let refused = "Generic S3 error: Error performing list request: Error performing GET \
            http://127.0.0.1:4/b?list-type=2 in 1.9ms - Server returned non-2xx status code: 403 \
            Forbidden: <?xml version=\"1.0\"?> <Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature …</Message></Error>";
        assert_eq!(gist(refused), "SignatureDoesNotMatch, HTTP 403 Forbidden");
        let dead = "Generic S3 error: Error performing list request: Error performing GET \
            http://127.0.0.1:1/b in 424ms, after 3 retries - HTTP error: error sending request: \
            client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(
            gist(dead),
            "tcp connect error: Connection refused (os error 111)"
        );
    }
}
