//! Files the daemon keeps between runs: the state directory (0700) and the runtime secrets in it
//! (0600), generated once so that clients that cached them — long-running notebook kernels —
//! keep working across restarts.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use azbroker_core::Secret;

use crate::daemon::owned_dir::OwnedDir;

/// Creates `dir` (and parents) if needed, or verifies that it is this user's own (not a symbolic
/// link, writable by no one else), and makes it private to its owner (0700).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    OwnedDir::prepare(dir, 0o700).map(drop)
}

/// Reads a secret from `path`, or generates a random one and stores it there (0600, atomically).
pub fn load_or_create_secret(path: &Path) -> Result<Secret> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim_end_matches(['\n', '\r']);
            if s.is_empty() {
                bail!("{} is empty; delete it to generate a new secret", path.display());
            }
            // Ours to fix: a generated secret is never readable by anyone else.
            if fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                fs::set_permissions(path, Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} private (chmod 0600)", path.display()))?;
            }
            Ok(Secret::new(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = Secret::new(random_token());
            write_private(path, secret.expose().as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads an existing secret file (configured by the user); never creates it, and refuses one that
/// every local user can read.
pub fn read_secret_file(path: &Path) -> Result<Secret> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        bail!(
            "{} is readable by every local user (mode {:o}); make it private first: chmod o-rwx {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let s = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']);
    if s.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(Secret::new(s))
}

/// Writes `bytes` to `path` with mode 0600: temp file, fsync, rename — relative to its verified
/// directory, never through a symbolic link ([`OwnedDir::write`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        bail!("{} is not a file in a directory", path.display())
    };
    OwnedDir::existing(dir)?.write(name, bytes, 0o600).map(drop)
}

/// 32 random bytes, base64url without padding (43 characters, header- and URL-safe).
pub fn random_token() -> String {
    Secret::random(32).expose().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn secret_is_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        ensure_private_dir(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
        let path = state.join("identity-header");
        let a = load_or_create_secret(&path).unwrap();
        let b = load_or_create_secret(&path).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn loose_directory_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn world_readable_secret_files_are_refused_or_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let configured = dir.path().join("configured");
        fs::write(&configured, "value\n").unwrap();
        fs::set_permissions(&configured, Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_file(&configured).unwrap_err().to_string();
        assert!(err.contains("readable by every local user") && err.contains("chmod o-rwx"), "{err}");
        fs::set_permissions(&configured, Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_secret_file(&configured).unwrap().expose(), "value");
        let generated = dir.path().join("generated");
        fs::write(&generated, "value").unwrap();
        fs::set_permissions(&generated, Permissions::from_mode(0o644)).unwrap();
        load_or_create_secret(&generated).unwrap();
        assert_eq!(fs::metadata(&generated).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn empty_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        fs::write(&path, "\n").unwrap();
        assert!(load_or_create_secret(&path).is_err());
    }
}
