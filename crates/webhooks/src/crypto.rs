//! Encryption at rest of notification headers and signing secrets.
//!
//! Values are sealed with XChaCha20-Poly1305 under a 32-byte master key, with
//! a fresh random 24-byte nonce per value and, as associated data, the
//! notification's id and the column name, so that a sealed value copied to
//! another row or column does not open. A sealed value is
//! `[1][key id: 4][nonce: 24][ciphertext + tag]`; the key id is the first four
//! bytes of the key's SHA-256, so the keyring can find the key that opens it.
//!
//! The keyring has one current key (sealing and opening) and any number of
//! previous keys (opening only). It comes from the configuration (`key` and
//! `previous_keys`) or, when none is configured, from `webhooks.key` in the
//! data directory, which this module creates (mode 0600) and rewrites
//! atomically on rotation. Key material is never printed.

use crate::error::{WebhooksError, io_err};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name of the generated keyring inside the data directory.
pub const KEY_FILE: &str = "webhooks.key";

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 24;

pub(crate) type KeyId = [u8; 4];

#[derive(Clone)]
struct MasterKey {
    id: KeyId,
    bytes: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    fn new(bytes: [u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest[..4]);
        MasterKey {
            id,
            bytes,
            cipher: XChaCha20Poly1305::new(&Key::from(bytes)),
        }
    }

    fn from_base64(text: &str, what: &str) -> Result<Self, WebhooksError> {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| WebhooksError::Key(format!("{what} is not valid base64")))?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| {
            WebhooksError::Key(format!("{what} must be 32 bytes (base64 of 32 bytes)"))
        })?;
        Ok(MasterKey::new(bytes))
    }

    fn generate() -> Self {
        MasterKey::new(rand::random())
    }

    fn id_hex(&self) -> String {
        hex(&self.id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where the current key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    Config,
    File(PathBuf),
}

/// The current key and the previous ones: what a store seals and opens
/// notification values with.
#[derive(Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
    pub(crate) source: KeySource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id_hex())
            .field(
                "previous",
                &self
                    .previous
                    .iter()
                    .map(MasterKey::id_hex)
                    .collect::<Vec<_>>(),
            )
            .field("source", &self.source)
            .finish()
    }
}

/// The keyring file: key ids to base64 keys, and which one is current.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    current: String,
    keys: BTreeMap<String, String>,
}

impl Keyring {
    /// The configured key (with its previous keys), or else the file's,
    /// generating the file when missing. Keys left in the file are kept for
    /// opening when the configuration takes over.
    pub fn load(
        data_dir: &Path,
        key: Option<&str>,
        previous: &[String],
    ) -> Result<Keyring, WebhooksError> {
        let path = data_dir.join(KEY_FILE);
        let file = read_key_file(&path)?;
        let ring = match key {
            Some(k) => {
                let mut ring = Keyring::configured(k, previous)?;
                if let Some((cur, others)) = file {
                    ring.previous.push(cur);
                    ring.previous.extend(others);
                }
                ring
            }
            None => {
                let (current, prev) = match file {
                    Some(f) => f,
                    None => {
                        let k = MasterKey::generate();
                        write_key_file(&path, &k, &[])?;
                        tracing::info!(path = %path.display(), key_id = %k.id_hex(), "generated the webhooks master key");
                        (k, Vec::new())
                    }
                };
                let mut prev = prev;
                for (i, p) in previous.iter().enumerate() {
                    prev.push(MasterKey::from_base64(p, &format!("previous_keys[{i}]"))?);
                }
                Keyring {
                    current,
                    previous: prev,
                    source: KeySource::File(path),
                }
            }
        };
        Ok(ring.deduplicated())
    }

    /// The configured key and its previous keys alone, with no file: what
    /// instances sharing one database use, each configured with the same
    /// key. Such a ring cannot be rotated by [`Keyring::rotated`]: the
    /// configuration changes instead.
    pub fn configured(key: &str, previous: &[String]) -> Result<Keyring, WebhooksError> {
        let current = MasterKey::from_base64(key, "the configured webhooks key")?;
        let mut prev = Vec::new();
        for (i, p) in previous.iter().enumerate() {
            prev.push(MasterKey::from_base64(p, &format!("previous_keys[{i}]"))?);
        }
        Ok(Keyring {
            current,
            previous: prev,
            source: KeySource::Config,
        }
        .deduplicated())
    }

    /// Without the current key among the previous ones, nor a key twice.
    fn deduplicated(mut self) -> Keyring {
        let current = self.current.id;
        let mut seen = std::collections::HashSet::new();
        self.previous
            .retain(|k| k.id != current && seen.insert(k.id));
        self
    }

    #[cfg(test)]
    pub(crate) fn current_id(&self) -> KeyId {
        self.current.id
    }

    /// Seals `plain` for `(notification id, column)`.
    pub(crate) fn seal(&self, plain: &[u8], owner: &str, column: &str) -> Vec<u8> {
        let nonce: [u8; 24] = rand::random();
        let aad = aad(owner, column);
        // Encryption fails only for inputs beyond 2^38 bytes.
        let ct = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a sealed value with whichever key of the ring sealed it.
    pub(crate) fn open(
        &self,
        sealed: &[u8],
        owner: &str,
        column: &str,
    ) -> Result<Vec<u8>, WebhooksError> {
        let id = sealed_key_id(sealed).ok_or_else(|| {
            WebhooksError::Key(format!(
                "notification {owner}: {column} is not a sealed value"
            ))
        })?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                WebhooksError::Key(format!(
                    "notification {owner}: {column} is sealed with key {} which is not in the keyring \
                     (set it in previous_keys)",
                    hex(&id)
                ))
            })?;
        let nonce: [u8; 24] = sealed[5..HEADER]
            .try_into()
            .map_err(|_| WebhooksError::Key("short sealed value".into()))?;
        let aad = aad(owner, column);
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &aad,
                },
            )
            .map_err(|_| {
                WebhooksError::Key(format!(
                    "notification {owner}: {column} does not decrypt (tampered or wrong key)"
                ))
            })
    }

    /// Whether `sealed` needs re-sealing under the current key.
    pub(crate) fn is_stale(&self, sealed: &[u8]) -> bool {
        sealed_key_id(sealed) != Some(self.current.id)
    }

    /// Whether the keyring file holds keys other than the current one.
    pub(crate) fn has_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// A ring whose current key is new, keeping every key of this one for
    /// opening. The file (when file-managed) is written before returning.
    pub(crate) fn rotated(&self) -> Result<Keyring, WebhooksError> {
        let KeySource::File(path) = &self.source else {
            return Err(WebhooksError::Unsupported(
                "the webhooks master key comes from the configuration: set a new `key` and move \
                 the old one into `previous_keys`, then restart (every instance, when several \
                 share one database)"
                    .into(),
            ));
        };
        let new = MasterKey::generate();
        let mut previous = vec![self.current.clone()];
        previous.extend(self.previous.iter().cloned());
        write_key_file(path, &new, &previous)?;
        Ok(Keyring {
            current: new,
            previous,
            source: self.source.clone(),
        })
    }

    /// This ring without its previous keys; the file (when file-managed) is
    /// rewritten to hold the current key only. Call once no stored value
    /// needs them.
    pub(crate) fn pruned(&self) -> Result<Keyring, WebhooksError> {
        if let KeySource::File(path) = &self.source {
            write_key_file(path, &self.current, &[])?;
        }
        Ok(Keyring {
            current: self.current.clone(),
            previous: Vec::new(),
            source: self.source.clone(),
        })
    }
}

fn aad(owner: &str, column: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(owner.len() + column.len() + 1);
    v.extend_from_slice(owner.as_bytes());
    v.push(b'/');
    v.extend_from_slice(column.as_bytes());
    v
}

fn sealed_key_id(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
        return None;
    }
    sealed[1..5].try_into().ok()
}

fn read_key_file(path: &Path) -> Result<Option<(MasterKey, Vec<MasterKey>)>, WebhooksError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let file: KeyFile = serde_json::from_str(&text)
        .map_err(|e| WebhooksError::Key(format!("{} is not a keyring: {e}", path.display())))?;
    let mut current = None;
    let mut previous = Vec::new();
    for (id, k) in &file.keys {
        let key = MasterKey::from_base64(k, &format!("key {id} of {}", path.display()))?;
        if *id == file.current {
            current = Some(key);
        } else {
            previous.push(key);
        }
    }
    let current = current.ok_or_else(|| {
        WebhooksError::Key(format!(
            "{}: the current key {} is missing",
            path.display(),
            file.current
        ))
    })?;
    Ok(Some((current, previous)))
}

/// Writes the keyring atomically: a 0600 temporary file, synced, renamed over
/// the old one, and the directory synced.
fn write_key_file(
    path: &Path,
    current: &MasterKey,
    previous: &[MasterKey],
) -> Result<(), WebhooksError> {
    let file = KeyFile {
        current: current.id_hex(),
        keys: std::iter::once(current)
            .chain(previous)
            .map(|k| (k.id_hex(), STANDARD.encode(k.bytes)))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| WebhooksError::Key(format!("cannot encode the keyring: {e}")))?;
    let tmp = path.with_extension("key.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_owner_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load(dir.path(), None, &[]).expect("load");
        let sealed = ring.seal(b"hello", "n1", "secret");
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(ring.open(&sealed, "n1", "secret").expect("open"), b"hello");
        assert!(ring.open(&sealed, "n2", "secret").is_err());
        assert!(ring.open(&sealed, "n1", "headers").is_err());
    }

    #[test]
    fn generated_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load(dir.path(), None, &[]).expect("load");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Keyring::load(dir.path(), None, &[]).expect("reload");
        assert_eq!(ring.current_id(), again.current_id());
        let sealed = ring.seal(b"x", "n", "c");
        assert_eq!(again.open(&sealed, "n", "c").expect("open"), b"x");
    }

    #[test]
    fn rotation_keeps_the_old_key_until_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load(dir.path(), None, &[]).expect("load");
        let old = ring.seal(b"x", "n", "c");
        let rotated = ring.rotated().expect("rotate");
        assert!(rotated.is_stale(&old));
        let reloaded = Keyring::load(dir.path(), None, &[]).expect("reload");
        assert_eq!(reloaded.current_id(), rotated.current_id());
        assert_eq!(reloaded.open(&old, "n", "c").expect("open"), b"x");
        let pruned = rotated.pruned().expect("prune");
        assert!(pruned.open(&old, "n", "c").is_err());
        assert!(
            !Keyring::load(dir.path(), None, &[])
                .expect("reload")
                .has_previous()
        );
    }

    #[test]
    fn a_configured_key_refuses_rotation_and_reads_previous_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = STANDARD.encode([1u8; 32]);
        let b = STANDARD.encode([2u8; 32]);
        let old = Keyring::load(dir.path(), Some(&a), &[]).expect("a");
        let sealed = old.seal(b"x", "n", "c");
        let new = Keyring::load(dir.path(), Some(&b), std::slice::from_ref(&a)).expect("b");
        assert_eq!(new.open(&sealed, "n", "c").expect("open"), b"x");
        assert!(matches!(new.rotated(), Err(WebhooksError::Unsupported(_))));
        assert!(Keyring::load(dir.path(), Some("short"), &[]).is_err());
    }

    #[test]
    fn a_configured_ring_needs_no_file_and_reads_its_previous_keys() {
        let a = STANDARD.encode([1u8; 32]);
        let b = STANDARD.encode([2u8; 32]);
        let old = Keyring::configured(&a, &[]).expect("a");
        let sealed = old.seal(b"x", "n", "c");
        let new = Keyring::configured(&b, &[a.clone(), b.clone(), a]).expect("b");
        assert_eq!(new.open(&sealed, "n", "c").expect("open"), b"x");
        assert!(new.is_stale(&sealed));
        assert_eq!(
            new.previous.len(),
            1,
            "the current key and repeats left out"
        );
        assert!(matches!(new.rotated(), Err(WebhooksError::Unsupported(_))));
        assert!(!format!("{new:?}").contains(&b), "no key material in Debug");
        assert!(
            Keyring::configured("c2hvcnQ=", &[]).is_err(),
            "not 32 bytes"
        );
    }
}
