//! Client-side encryption of a remote: what the bucket holds is unreadable without the
//! repository key, and its names say nothing about the data.
//!
//! ```text
//! keys/<16 hex>.json   the repository key, wrapped (plain JSON, one per passphrase or
//!                      key file): {format, kind, check, argon2id: {memory_kib,
//!                      iterations, lanes, salt}, nonce, wrapped}
//! <name>/<name>/…      every other object (packs, indexes, snapshot records, owner
//!                      records), under its own name with each `/`-separated part hidden
//! ```
//!
//! - The repository key is 64 random bytes: the first 32 seal objects
//!   (XChaCha20-Poly1305, a random 24-byte nonce per object), the last 32 hide names.
//! - A sealed object is `DBGX`, version byte 1, the nonce, then the ciphertext with its
//!   16-byte tag; the associated data is the object's plain name, so an object moved
//!   or copied to another name (a pack swapped for another) fails to open.
//! - A hidden name part is base64url (no padding) of AES-256-GCM-SIV under a fixed nonce:
//!   deterministic (the same part always hides the same way, so conditional creates and
//!   listings still work), reversible with the key, and it reveals only which parts are
//!   equal and roughly how long they are; page hashes, store ids and snapshot numbers
//!   stay hidden.
//! - A passphrase wraps the repository key through Argon2id (64 MiB, 3 passes, one
//!   lane, 16 random bytes of salt) and XChaCha20-Poly1305. A key file holds the
//!   repository key itself (`dbguard remote key export`); its record holds only the
//!   check value.
//! - `check` is the hidden form of a fixed text: the same for every record of one key,
//!   so a key file is recognised without a passphrase.
//!
//! Lose every passphrase and key file and the remote's copies are lost: nothing here
//! can recover them.

use aes_gcm_siv::Aes256GcmSiv;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Where the wrapped keys live, in plain names (read before the key is known).
pub(crate) const KEYS_DIR: &str = "keys";

const MAGIC: &[u8; 4] = b"DBGX";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// What sealing adds to an object's size.
pub(crate) const SEAL_OVERHEAD: u64 = (MAGIC.len() + 1 + NONCE_BYTES + TAG_BYTES) as u64;

const KEY_FILE_HEADER: &str = "dbguard remote key 1";
const RECORD_FORMAT: u32 = 1;
const CHECK_TEXT: &[u8] = b"dbguard key check";
/// Argon2id's cost for new passphrases: 64 MiB and 3 passes (RFC 9106's second choice).
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_ITERATIONS: u32 = 3;
/// What a key record may ask for at most (a hostile record must not exhaust memory).
const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The kernel's random source failing is no state to keep going in.
    getrandom::fill(&mut bytes).expect("the system's random number source failed");
    bytes
}

/// The key every object of one remote is sealed with.
pub(crate) struct RepoKey {
    bytes: [u8; 64],
}

impl Drop for RepoKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoKey({})", self.check())
    }
}

impl RepoKey {
    pub(crate) fn generate() -> RepoKey {
        RepoKey { bytes: random() }
    }

    fn data_cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.bytes[..32]).expect("a 32-byte key")
    }

    fn name_cipher(&self) -> Aes256GcmSiv {
        Aes256GcmSiv::new_from_slice(&self.bytes[32..]).expect("a 32-byte key")
    }

    fn object_aad(name: &str) -> Vec<u8> {
        [b"dbguard object\0".as_slice(), name.as_bytes()].concat()
    }

    /// `plain` sealed for the object `name`.
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = random();
        let aad = Self::object_aad(name);
        let sealed = self
            .data_cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any object dbguard writes");
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD as usize);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plain bytes of the object `name`, or `None` when it was not sealed by this
    /// key for this name (changed, damaged, moved, or another key's).
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let header = MAGIC.len() + 1;
        if sealed.len() < SEAL_OVERHEAD as usize
            || &sealed[..MAGIC.len()] != MAGIC
            || sealed[MAGIC.len()] != VERSION
        {
            return None;
        }
        let nonce: [u8; NONCE_BYTES] = sealed[header..header + NONCE_BYTES].try_into().ok()?;
        let aad = Self::object_aad(name);
        self.data_cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &sealed[header + NONCE_BYTES..],
                    aad: &aad,
                },
            )
            .ok()
    }

    fn hide_part(&self, part: &str) -> String {
        let nonce = [0u8; 12];
        let hidden = self
            .name_cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: part.as_bytes(),
                    aad: b"dbguard name",
                },
            )
            .expect("AES-GCM-SIV hides any name part");
        URL_SAFE_NO_PAD.encode(hidden)
    }

    fn reveal_part(&self, hidden: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(hidden).ok()?;
        let nonce = [0u8; 12];
        let plain = self
            .name_cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &bytes,
                    aad: b"dbguard name",
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// The name an object is stored under: each part of `name` hidden.
    pub(crate) fn hide(&self, name: &str) -> String {
        name.split('/')
            .filter(|p| !p.is_empty())
            .map(|p| self.hide_part(p))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The plain name of a stored one; `None` for a name this key did not hide (the
    /// key records, objects of an unencrypted push, anything else in the bucket).
    pub(crate) fn reveal(&self, hidden: &str) -> Option<String> {
        hidden
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| self.reveal_part(p))
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join("/"))
    }

    /// The same for every record of this key; tells a key file's key from another.
    pub(crate) fn check(&self) -> String {
        self.hide_part(std::str::from_utf8(CHECK_TEXT).unwrap_or_default())
    }

    /// The text of a key file holding this key.
    pub(crate) fn to_key_file(&self) -> String {
        format!(
            "{KEY_FILE_HEADER}\n{}\n# Keep this file secret and safe: it opens every copy on the remote.\n",
            STANDARD.encode(self.bytes)
        )
    }

    /// Read a key file; `Err` says what is wrong with it.
    pub(crate) fn from_key_file(text: &str) -> Result<RepoKey, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(format!(
                "it is not a dbguard key file (its first line is not `{KEY_FILE_HEADER}`)"
            ));
        }
        let mut decoded = lines
            .next()
            .and_then(|line| STANDARD.decode(line).ok())
            .ok_or("its key line is not base64")?;
        let key = <[u8; 64]>::try_from(decoded.as_slice())
            .map(|bytes| RepoKey { bytes })
            .map_err(|_| "its key is not 64 bytes long".to_string());
        decoded.zeroize();
        key
    }
}

/// Argon2id's parameters of one passphrase record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Argon2Params {
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
    salt: String,
}

/// `keys/<id>.json`: the repository key wrapped by one passphrase, or the mark of a key
/// file (`kind` `key-file`: no wrapped key, the file is the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    format: u32,
    pub(crate) kind: String,
    check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2id: Option<Argon2Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
}

fn derive(passphrase: &str, params: &Argon2Params) -> Option<[u8; 32]> {
    if params.memory_kib > ARGON2_MAX_MEMORY_KIB || params.iterations > 100 || params.lanes > 16 {
        return None;
    }
    let salt = STANDARD.decode(&params.salt).ok()?;
    let config = argon2::Config {
        variant: argon2::Variant::Argon2id,
        version: argon2::Version::Version13,
        mem_cost: params.memory_kib,
        time_cost: params.iterations,
        lanes: params.lanes,
        hash_length: 32,
        ..argon2::Config::default()
    };
    let mut hash = argon2::hash_raw(passphrase.as_bytes(), &salt, &config).ok()?;
    let key = <[u8; 32]>::try_from(hash.as_slice()).ok();
    hash.zeroize();
    key
}

const WRAP_AAD: &[u8] = b"dbguard repository key";

impl KeyRecord {
    /// A new record: `key` wrapped by `passphrase`.
    pub(crate) fn with_passphrase(key: &RepoKey, passphrase: &str) -> KeyRecord {
        let params = Argon2Params {
            memory_kib: ARGON2_MEMORY_KIB,
            iterations: ARGON2_ITERATIONS,
            lanes: 1,
            salt: STANDARD.encode(random::<16>()),
        };
        let mut wrapping = derive(passphrase, &params).expect("Argon2id with dbguard's parameters");
        let nonce: [u8; NONCE_BYTES] = random();
        let wrapped = XChaCha20Poly1305::new_from_slice(&wrapping)
            .expect("a 32-byte key")
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &key.bytes,
                    aad: WRAP_AAD,
                },
            )
            .expect("XChaCha20-Poly1305 wraps 64 bytes");
        wrapping.zeroize();
        KeyRecord {
            format: RECORD_FORMAT,
            kind: "passphrase".into(),
            check: key.check(),
            argon2id: Some(params),
            nonce: Some(STANDARD.encode(nonce)),
            wrapped: Some(STANDARD.encode(wrapped)),
        }
    }

    /// A new record for a key file holding `key`.
    pub(crate) fn for_key_file(key: &RepoKey) -> KeyRecord {
        KeyRecord {
            format: RECORD_FORMAT,
            kind: "key-file".into(),
            check: key.check(),
            argon2id: None,
            nonce: None,
            wrapped: None,
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<KeyRecord> {
        serde_json::from_slice::<KeyRecord>(bytes)
            .ok()
            .filter(|r| r.format <= RECORD_FORMAT)
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The repository key, when `passphrase` is this record's.
    pub(crate) fn unwrap_with(&self, passphrase: &str) -> Option<RepoKey> {
        let (Some(params), Some(nonce), Some(wrapped)) =
            (&self.argon2id, &self.nonce, &self.wrapped)
        else {
            return None;
        };
        let nonce: [u8; NONCE_BYTES] = STANDARD.decode(nonce).ok()?.try_into().ok()?;
        let wrapped = STANDARD.decode(wrapped).ok()?;
        let mut wrapping = derive(passphrase, params)?;
        let opened = XChaCha20Poly1305::new_from_slice(&wrapping).ok()?.decrypt(
            &nonce.into(),
            Payload {
                msg: &wrapped,
                aad: WRAP_AAD,
            },
        );
        wrapping.zeroize();
        let mut plain = opened.ok()?;
        let key = <[u8; 64]>::try_from(plain.as_slice())
            .ok()
            .map(|bytes| RepoKey { bytes });
        plain.zeroize();
        key.filter(|key| key.check() == self.check)
    }

    /// Whether `key` (from a key file) is the key of this record.
    pub(crate) fn matches(&self, key: &RepoKey) -> bool {
        key.check() == self.check
    }
}

/// A new record's object name: `keys/<16 random hex digits>.json`.
pub(crate) fn new_record_name() -> String {
    let id: [u8; 8] = random();
    format!("{KEYS_DIR}/{}.json", crate::db::hex(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_open_only_under_their_own_name_and_unchanged() {
        let key = RepoKey::generate();
        let sealed = key.seal("stores/a/packs/p.pack", b"row value 42");
        assert_eq!(sealed.len() as u64, 12 + SEAL_OVERHEAD);
        assert_eq!(
            key.open("stores/a/packs/p.pack", &sealed).unwrap(),
            b"row value 42"
        );
        assert!(key.open("stores/a/packs/q.pack", &sealed).is_none());
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(key.open("stores/a/packs/p.pack", &changed).is_none());
        assert!(
            RepoKey::generate()
                .open("stores/a/packs/p.pack", &sealed)
                .is_none()
        );
        // Two seals of the same bytes differ (a random nonce each).
        assert_ne!(sealed, key.seal("stores/a/packs/p.pack", b"row value 42"));
    }

    #[test]
    fn names_hide_every_part_and_come_back_only_with_the_key() {
        let key = RepoKey::generate();
        let name = "stores/0123abcd/packs/deadbeef.pack";
        let hidden = key.hide(name);
        assert_eq!(hidden, key.hide(name), "deterministic");
        assert_eq!(hidden.split('/').count(), 4);
        for part in ["stores", "0123abcd", "packs", "deadbeef", "pack"] {
            assert!(!hidden.contains(part), "{hidden} shows {part}");
        }
        assert_eq!(key.reveal(&hidden).as_deref(), Some(name));
        assert_eq!(RepoKey::generate().reveal(&hidden), None);
        assert_eq!(key.reveal("keys/0011.json"), None);
    }

    #[test]
    fn passphrases_and_key_files_unwrap_the_same_key() {
        let key = RepoKey::generate();
        let record =
            KeyRecord::parse(&KeyRecord::with_passphrase(&key, "s3cret").to_json()).unwrap();
        let back = record.unwrap_with("s3cret").unwrap();
        assert_eq!(back.bytes, key.bytes);
        assert!(record.unwrap_with("wrong").is_none());
        let file = RepoKey::from_key_file(&key.to_key_file()).unwrap();
        assert!(record.matches(&file));
        assert!(KeyRecord::for_key_file(&key).matches(&file));
        assert!(!record.matches(&RepoKey::generate()));
        assert!(RepoKey::from_key_file("hello").is_err());
        assert!(
            format!("{key:?}").len() < 60,
            "no key bytes in debug output"
        );
    }
}
