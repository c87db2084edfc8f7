//! The encrypted login store: the refresh tokens (and sign-in state) of user logins, in one file
//! in the state directory, so logins survive restarts.
//!
//! * **Encryption**: AES-256-GCM (aws-lc-rs) under a key derived (HKDF-SHA256) from key material
//!   in `$CREDENTIALS_DIRECTORY/azbroker.key` (systemd credentials) or, failing that, a random key
//!   generated once into `state_dir/login-store.key` (0600).
//! * **Format**: a 26-byte header — magic `AZBROKER-LOGINS\0`, format version, algorithm, an
//!   8-byte key id — authenticated as associated data, then a random 96-bit nonce and the
//!   ciphertext of a JSON document.
//! * **Safety**: written atomically (temp file, fsync, rename, directory fsync), 0600 in a 0700
//!   directory. A file that is not ours, from a newer version, under another key or damaged is
//!   refused with an error saying which — and never overwritten; so is a symbolic link in its
//!   place, dangling or not. An exclusive `flock` on the state directory itself, held for the
//!   store's lifetime, keeps a second daemon from writing it at the same time: unlike a lock
//!   file, a directory holding the store cannot be deleted from under the daemon.
//!
//! Refresh tokens live in memory as [`Secret`]s and in plaintext only in zeroized buffers on
//! their way to the cipher.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use azbroker_core::Secret;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// File name of the store in the state directory.
pub const STORE_FILE: &str = "logins.store";
/// File name of a generated key in the state directory.
pub const GENERATED_KEY_FILE: &str = "login-store.key";
/// File name of the key in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "azbroker.key";

const MAGIC: &[u8; 16] = b"AZBROKER-LOGINS\0";
const VERSION: u8 = 1;
const ALG_AES_256_GCM: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2 + KEY_ID_LEN;
const KEY_ID_LEN: usize = 8;
/// Key material shorter than this is refused.
const MIN_KEY_MATERIAL: usize = 32;

/// Why the store (or its key) cannot be used. Every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the login store key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "the state directory {path} is in use by another process (another azbroker daemon using the same \
         state_dir?); stop it first"
    )]
    Locked { path: PathBuf },
    #[error(
        "refusing to open the login store {path}: {reason}. It is left untouched; restore the right key or \
         file, or move it away to start with no logins"
    )]
    Refused { path: PathBuf, reason: String },
    #[error("cannot write the login store {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    pub oid: Option<String>,
    pub home_tenant: Option<String>,
}

/// One user login's persistent state. `Debug` redacts the refresh token (it is a [`Secret`]).
#[derive(Debug, Clone, Default)]
pub struct StoredLogin {
    pub client_id: String,
    pub refresh_token: Option<Secret>,
    pub account: Option<Account>,
    /// Unix seconds of the last completed sign-in.
    pub signed_in_at: u64,
    /// Set when the whole login needs an interactive sign-in (refresh token rejected).
    pub needs_sign_in: Option<String>,
    /// Tenants (as profiles name them) that demand an interactive sign-in there, with why.
    pub tenants: BTreeMap<String, String>,
}

/// The on-disk JSON form (plaintext only inside the cipher).
#[derive(Serialize, Deserialize)]
struct Wire {
    version: u32,
    logins: BTreeMap<String, WireLogin>,
}

#[derive(Serialize, Deserialize)]
struct WireLogin {
    client_id: String,
    refresh_token: Option<String>,
    account: Option<Account>,
    #[serde(default)]
    signed_in_at: u64,
    needs_sign_in: Option<String>,
    #[serde(default)]
    tenants: BTreeMap<String, String>,
}

/// The AEAD key and its public id. Never printed.
pub struct StoreKey {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
    source: PathBuf,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey").field("id", &hex(&self.id)).field("source", &self.source).finish()
    }
}

impl StoreKey {
    /// The key from `credentials_dir/azbroker.key` when that file exists, else from
    /// `state_dir/login-store.key`, generating that file (0600) on first use.
    pub fn load_or_create(credentials_dir: Option<&Path>, state_dir: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = credentials_dir {
            let path = dir.join(CREDENTIAL_NAME);
            if path.exists() {
                return Self::from_file(&path);
            }
        }
        let path = state_dir.join(GENERATED_KEY_FILE);
        if !path.exists() {
            let mut material = Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(material.as_mut())
                .map_err(|_| StoreError::Key { path: path.clone(), reason: "no system randomness".into() })?;
            let text = Zeroizing::new(format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(material.as_ref())
            ));
            write_private(&path, text.as_bytes())
                .map_err(|e| StoreError::Key { path: path.clone(), reason: e.to_string() })?;
            tracing::info!(path = %path.display(), "generated a new login store key");
        }
        Self::from_file(&path)
    }

    /// Reads key material (raw bytes, or base64 text) from `path`.
    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        let err = |reason: String| StoreError::Key { path: path.to_owned(), reason };
        let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the login store key is readable by other users; chmod 600 it");
        }
        let raw = Zeroizing::new(fs::read(path).map_err(|e| err(e.to_string()))?);
        let decoded = std::str::from_utf8(&raw)
            .ok()
            .map(str::trim)
            .and_then(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .or_else(|_| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('='))
                    })
                    .ok()
            })
            .map(Zeroizing::new);
        let material: &[u8] = match &decoded {
            Some(d) if d.len() >= MIN_KEY_MATERIAL => d,
            _ => &raw,
        };
        if material.len() < MIN_KEY_MATERIAL {
            return Err(err(format!(
                "it holds {} bytes; at least {MIN_KEY_MATERIAL} random bytes are needed",
                material.len()
            )));
        }
        Self::derive(material, path).map_err(err)
    }

    fn derive(material: &[u8], source: &Path) -> Result<Self, String> {
        let prk = Salt::new(HKDF_SHA256, b"azbroker login store").extract(material);
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"aead key v1"], Len(32))
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| "key derivation failed".to_owned())?;
        let mut id = [0u8; KEY_ID_LEN];
        prk.expand(&[b"key id v1"], Len(KEY_ID_LEN))
            .and_then(|okm| okm.fill(&mut id))
            .map_err(|_| "key derivation failed".to_owned())?;
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| "bad AES key".to_owned())?;
        Ok(Self { key: LessSafeKey::new(unbound), id, source: source.to_owned() })
    }

    /// The key's public id (hex), shown in errors so a mismatch can be diagnosed.
    pub fn id(&self) -> String {
        hex(&self.id)
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The open store: its contents in memory, written through on every change.
pub struct LoginStore {
    path: PathBuf,
    key: StoreKey,
    logins: Mutex<BTreeMap<String, StoredLogin>>,
    /// Serialises writers so the file always holds the latest state.
    write: tokio::sync::Mutex<()>,
    _lock: File,
}

impl std::fmt::Debug for LoginStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStore").field("path", &self.path).field("key", &self.key).finish_non_exhaustive()
    }
}

impl LoginStore {
    /// Locks the state directory and reads `state_dir/logins.store` if it exists (an absent
    /// file is an empty store; a symbolic link is refused). Blocking file I/O: call at start-up
    /// or from `spawn_blocking`.
    pub fn open(state_dir: &Path, key: StoreKey) -> Result<Self, StoreError> {
        let lock = File::open(state_dir)
            .map_err(|e| StoreError::Write { path: state_dir.to_owned(), reason: e.to_string() })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked { path: state_dir.to_owned() });
        }
        let path = state_dir.join(STORE_FILE);
        let logins = match read_no_follow(&path) {
            Ok(bytes) => {
                decode(&bytes, &key).map_err(|reason| StoreError::Refused { path: path.clone(), reason })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                let reason = "it is a symbolic link, not the store itself".to_owned();
                return Err(StoreError::Refused { path, reason });
            }
            Err(e) => return Err(StoreError::Refused { path, reason: e.to_string() }),
        };
        tracing::info!(path = %path.display(), logins = logins.len(), key_id = %key.id(), "login store open");
        Ok(Self { path, key, logins: Mutex::new(logins), write: tokio::sync::Mutex::new(()), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of one login's state.
    pub fn get(&self, login: &str) -> Option<StoredLogin> {
        self.lock().get(login).cloned()
    }

    /// Changes one login's state (creating it if absent) and persists the store.
    pub async fn update(&self, login: &str, change: impl FnOnce(&mut StoredLogin)) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        change(self.lock().entry(login.to_owned()).or_default());
        self.persist().await
    }

    /// Changes an existing login's state when `change` says it changed something (returns
    /// true), and persists it then. A login that is not stored (signed out meanwhile) is left
    /// alone. Returns whether anything was written.
    pub async fn update_existing(
        &self,
        login: &str,
        change: impl FnOnce(&mut StoredLogin) -> bool,
    ) -> Result<bool, StoreError> {
        let _writer = self.write.lock().await;
        let changed = self.lock().get_mut(login).is_some_and(change);
        if changed {
            self.persist().await?;
        }
        Ok(changed)
    }

    /// Forgets a login; true if it was stored.
    pub async fn remove(&self, login: &str) -> Result<bool, StoreError> {
        let _writer = self.write.lock().await;
        let removed = self.lock().remove(login).is_some();
        if removed {
            self.persist().await?;
        }
        Ok(removed)
    }

    /// Encrypts the current state and replaces the file. The caller holds `write`.
    async fn persist(&self) -> Result<(), StoreError> {
        let sealed = {
            let logins = self.lock();
            encode(&logins, &self.key)
        }
        .map_err(|reason| StoreError::Write { path: self.path.clone(), reason })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_private(&path, &sealed))
            .await
            .map_err(|e| StoreError::Write { path: self.path.clone(), reason: e.to_string() })?
            .map_err(|e| StoreError::Write { path: self.path.clone(), reason: e.to_string() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredLogin>> {
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn encode(logins: &BTreeMap<String, StoredLogin>, key: &StoreKey) -> Result<Vec<u8>, String> {
    let wire = Wire {
        version: 1,
        logins: logins
            .iter()
            .map(|(name, l)| {
                (
                    name.clone(),
                    WireLogin {
                        client_id: l.client_id.clone(),
                        refresh_token: l.refresh_token.as_ref().map(|s| s.expose().to_owned()),
                        account: l.account.clone(),
                        signed_in_at: l.signed_in_at,
                        needs_sign_in: l.needs_sign_in.clone(),
                        tenants: l.tenants.clone(),
                    },
                )
            })
            .collect(),
    };
    let mut plaintext = Zeroizing::new(serde_json::to_vec(&wire).map_err(|e| e.to_string())?);
    for l in wire.logins.into_values() {
        if let Some(rt) = l.refresh_token {
            drop(Zeroizing::new(rt));
        }
    }
    let mut header = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + 16);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&[VERSION, ALG_AES_256_GCM]);
    header.extend_from_slice(&key.id);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no system randomness".to_owned())?;
    key.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header[..]),
            &mut *plaintext,
        )
        .map_err(|_| "encryption failed".to_owned())?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plaintext);
    Ok(out)
}

fn decode(bytes: &[u8], key: &StoreKey) -> Result<BTreeMap<String, StoredLogin>, String> {
    if bytes.len() < HEADER_LEN + NONCE_LEN + 16 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("it is not an azbroker login store (unknown header)".into());
    }
    let (version, alg) = (bytes[MAGIC.len()], bytes[MAGIC.len() + 1]);
    if version != VERSION || alg != ALG_AES_256_GCM {
        return Err(format!(
            "it has format version {version} / algorithm {alg}, which this azbroker does not know (written by a newer version?)"
        ));
    }
    let id = &bytes[MAGIC.len() + 2..HEADER_LEN];
    if id != key.id {
        return Err(format!(
            "it was encrypted under another key (key id {}; the key in {} has id {})",
            hex(id),
            key.source.display(),
            key.id()
        ));
    }
    let (header, rest) = bytes.split_at(HEADER_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
    let mut buf = Zeroizing::new(sealed.to_vec());
    let plaintext = key
        .key
        .open_in_place(nonce, Aad::from(header), &mut buf)
        .map_err(|_| "it fails authentication (damaged or tampered with)".to_owned())?;
    let wire: Wire =
        serde_json::from_slice(plaintext).map_err(|_| "its contents are not a login list".to_owned())?;
    Ok(wire
        .logins
        .into_iter()
        .map(|(name, l)| {
            (
                name,
                StoredLogin {
                    client_id: l.client_id,
                    refresh_token: l.refresh_token.map(|rt| Secret::new(Zeroizing::new(rt).as_str())),
                    account: l.account,
                    signed_in_at: l.signed_in_at,
                    needs_sign_in: l.needs_sign_in,
                    tenants: l.tenants,
                },
            )
        })
        .collect())
}

/// Writes `bytes` to `path` with mode 0600: temp file, fsync, rename, fsync of the directory.
/// The temporary file is created exclusively and never through a symbolic link (a stale one, or a
/// link planted in its place, is removed first — the link itself, not its target).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("path has no parent directory"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The contents of `path`, which must not be a symbolic link (`ELOOP` if it is, even dangling).
fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn key(dir: &Path) -> StoreKey {
        StoreKey::load_or_create(None, dir).unwrap()
    }

    #[tokio::test]
    async fn round_trip_private_and_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoginStore::open(dir.path(), key(dir.path())).unwrap();
        store
            .update("me", |l| {
                l.client_id = "cid".into();
                l.refresh_token = Some(Secret::new("0.rt.very-secret-refresh-token"));
                l.account =
                    Some(Account { username: "alice@contoso.example".into(), oid: None, home_tenant: None });
                l.tenants.insert("fabrikam.example".into(), "MFA".into());
            })
            .await
            .unwrap();
        let bytes = fs::read(store.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("very-secret") && !text.contains("alice") && !text.contains("fabrikam"));
        assert_eq!(fs::metadata(store.path()).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.path().join(GENERATED_KEY_FILE)).unwrap().mode() & 0o777, 0o600);
        // A second opener is locked out while the first holds the store.
        assert!(matches!(LoginStore::open(dir.path(), key(dir.path())), Err(StoreError::Locked { .. })));
        drop(store);
        let store = LoginStore::open(dir.path(), key(dir.path())).unwrap();
        let me = store.get("me").unwrap();
        assert_eq!(me.refresh_token.unwrap().expose(), "0.rt.very-secret-refresh-token");
        assert_eq!(me.tenants["fabrikam.example"], "MFA");
        // A change to a login that is gone (signed out meanwhile) does not bring it back.
        assert!(store.update_existing("me", |_| true).await.unwrap());
        assert!(!store.update_existing("me", |_| false).await.unwrap());
        assert!(store.remove("me").await.unwrap());
        assert!(!store.update_existing("me", |_| true).await.unwrap());
        assert!(store.get("me").is_none());
    }

    #[tokio::test]
    async fn wrong_key_foreign_and_damaged_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = LoginStore::open(dir.path(), key(dir.path())).unwrap();
        store.update("me", |l| l.client_id = "cid".into()).await.unwrap();
        drop(store);
        let path = dir.path().join(STORE_FILE);
        let original = fs::read(&path).unwrap();

        let creds = tempfile::tempdir().unwrap();
        fs::write(creds.path().join(CREDENTIAL_NAME), [7u8; 40]).unwrap();
        let other = StoreKey::load_or_create(Some(creds.path()), dir.path()).unwrap();
        let err = LoginStore::open(dir.path(), other).unwrap_err().to_string();
        assert!(err.contains("another key") && err.contains("left untouched"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), original);

        let mut damaged = original.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        fs::write(&path, &damaged).unwrap();
        let err = LoginStore::open(dir.path(), key(dir.path())).unwrap_err().to_string();
        assert!(err.contains("fails authentication"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), damaged);

        fs::write(&path, b"{\"logins\": {}}").unwrap();
        let err = LoginStore::open(dir.path(), key(dir.path())).unwrap_err().to_string();
        assert!(err.contains("not an azbroker login store"), "{err}");

        // A symbolic link in the store's place, dangling or not, is refused, not replaced.
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        let err = LoginStore::open(dir.path(), key(dir.path())).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains("left untouched"), "{err}");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_link_planted_as_the_temporary_file_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "mine").unwrap();
        let path = dir.path().join(STORE_FILE);
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{STORE_FILE}.tmp"))).unwrap();
        write_private(&path, b"sealed").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine");
        assert_eq!(fs::read(&path).unwrap(), b"sealed");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
    }

    #[test]
    fn the_lock_is_on_the_directory_and_survives_deleting_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let _first = LoginStore::open(dir.path(), key(dir.path())).unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let err = LoginStore::open(dir.path(), key(dir.path())).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn short_keys_are_refused_and_text_keys_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        fs::write(&short, "c2hvcnQ=\n").unwrap();
        assert!(StoreKey::from_file(&short).unwrap_err().to_string().contains("at least 32"));
        let text = dir.path().join("text");
        fs::write(&text, format!("{}\n", base64::engine::general_purpose::STANDARD.encode([1u8; 32])))
            .unwrap();
        let raw = dir.path().join("raw");
        fs::write(&raw, [1u8; 32]).unwrap();
        assert_eq!(StoreKey::from_file(&text).unwrap().id(), StoreKey::from_file(&raw).unwrap().id());
    }
}
