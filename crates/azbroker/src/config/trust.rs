//! Whether the files a config is made of may be trusted, the way sshd's `StrictModes` decides:
//! the config file, and every file it names that holds a secret or a command (secret files,
//! certificate keys, federated token files, the `az` program), must be owned by this process's
//! user or root, writable by no one else, and sit in a directory no one else may write (a
//! root-owned sticky directory such as /tmp is fine). Otherwise another local user could edit
//! the policy or run code as the daemon. Checked at every load, so a reload is refused too.
//! Reads metadata only; never the files' contents.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use azbroker_entra::SecretRef;

use super::{Config, LoginKind};

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const GROUP_OR_OTHER_READ: u32 = 0o044;
const STICKY: u32 = 0o1000;

/// Every problem with the config file itself (empty when it may be trusted).
pub fn config_file(path: &Path, uid: u32) -> Vec<String> {
    problem(path, "the config file", uid).into_iter().collect()
}

/// Every problem with the files `config` names that hold a secret or a command.
pub fn referenced_files(config: &Config, uid: u32) -> Vec<String> {
    sensitive_files(config).into_iter().filter_map(|(key, path)| problem(&path, &key, uid)).collect()
}

/// Warnings about a config that may be trusted but still shows too much: an inline
/// `client_secret` in a file other users can read.
pub fn warnings(config: &Config) -> Vec<String> {
    let Some(origin) = &config.origin else { return Vec::new() };
    let readable = std::fs::metadata(origin).is_ok_and(|m| m.mode() & GROUP_OR_OTHER_READ != 0);
    let inline = config
        .logins
        .values()
        .filter(|l| matches!(&l.kind, LoginKind::ServicePrincipal { secret: SecretRef::Inline(_), .. }));
    if !readable {
        return Vec::new();
    }
    inline
        .map(|l| {
            format!(
                "logins.{}.client_secret is inline in {}, which other local users can read: `chmod 600` it, \
                 or move the secret to client_secret_file",
                l.name,
                origin.display()
            )
        })
        .collect()
}

/// (config key, path) of every file named in `config` that holds a secret or a command.
fn sensitive_files(config: &Config) -> Vec<(String, PathBuf)> {
    let s = &config.server;
    let mut files: Vec<(String, PathBuf)> = [
        ("server.identity_header_file", &s.identity_header_file),
        ("server.msi_secret_file", &s.dialects.msi_secret_file),
        ("server.native_key_file", &s.dialects.native_key_file),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.clone().map(|p| (k.to_owned(), p)))
    .collect();
    for l in config.logins.values() {
        let key = |k: &str| format!("logins.{}.{k}", l.name);
        match &l.kind {
            LoginKind::ServicePrincipal { secret: SecretRef::File(p), .. } => {
                files.push((key("client_secret_file"), p.clone()));
            }
            LoginKind::Certificate { certificate_file, .. } => {
                files.push((key("certificate_file"), certificate_file.clone()));
            }
            LoginKind::WorkloadIdentity { token_file, .. } => {
                files.push((key("token_file"), token_file.clone()))
            }
            LoginKind::AzureCli { command, .. } => {
                if let Some(program) = on_path(command) {
                    files.push((key("command"), program));
                }
            }
            _ => {}
        }
    }
    files
}

/// `command` as the daemon would run it: a path as given, a bare name from `$PATH`.
fn on_path(command: &Path) -> Option<PathBuf> {
    if command.components().count() > 1 {
        return Some(command.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(command)).find(|p| p.is_file())
}

/// Why `path` (what the config calls `what`) may not be trusted, if it may not. A file that does
/// not exist (yet) is not judged here; using it reports that.
fn problem(path: &Path, what: &str, uid: u32) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    let shown = if real == path {
        path.display().to_string()
    } else {
        format!("{} ({})", path.display(), real.display())
    };
    let subject = format!("{what} {shown}");
    if let Some(p) = owner_or_mode(&meta, uid, &subject) {
        return Some(p);
    }
    let dir = real.parent()?;
    let dmeta = std::fs::metadata(dir).ok()?;
    let root_sticky = dmeta.uid() == 0 && dmeta.mode() & STICKY != 0;
    if root_sticky {
        return None;
    }
    owner_or_mode(&dmeta, uid, &format!("the directory {} of {subject}", dir.display()))
}

/// Why `subject` (a file or directory) is not under the sole control of `uid` or root.
fn owner_or_mode(meta: &std::fs::Metadata, uid: u32, subject: &str) -> Option<String> {
    if meta.uid() != uid && meta.uid() != 0 {
        return Some(format!(
            "{subject} is owned by uid {}; only this user (uid {uid}) or root may own it",
            meta.uid()
        ));
    }
    (meta.mode() & GROUP_OR_OTHER_WRITE != 0).then(|| {
        format!("{subject} is writable by other users (mode {:04o}); `chmod go-w` it", meta.mode() & 0o7777)
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn writable_by_others_or_in_an_open_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "").unwrap();
        let me = crate::paths::current_uid();
        chmod(&file, 0o644);
        assert!(config_file(&file, me).is_empty());
        chmod(&file, 0o664);
        assert!(config_file(&file, me)[0].contains("writable by other users (mode 0664)"));
        chmod(&file, 0o600);
        chmod(dir.path(), 0o777);
        let p = config_file(&file, me);
        assert!(p[0].contains("the directory") && p[0].contains("mode 0777"), "{p:?}");
        // Owned by someone else (not root): judged as that user, the file's owner is a stranger.
        chmod(dir.path(), 0o700);
        let stranger = if me == 0 { 4242 } else { me + 1 };
        let p = config_file(&file, stranger);
        if me == 0 {
            assert!(p.is_empty(), "root-owned files are trusted by every user: {p:?}");
        } else {
            assert!(p[0].contains(&format!("owned by uid {me}")), "{p:?}");
        }
        assert!(config_file(&dir.path().join("absent"), me).is_empty());
    }

    #[test]
    fn a_root_owned_sticky_directory_is_fine() {
        let tmp = Path::new("/tmp");
        let meta = std::fs::metadata(tmp).unwrap();
        assert!(meta.uid() == 0 && meta.mode() & STICKY != 0, "/tmp is root's and sticky on this machine");
        let file = tempfile::NamedTempFile::new_in(tmp).unwrap();
        chmod(file.path(), 0o600);
        assert!(config_file(file.path(), crate::paths::current_uid()).is_empty());
    }
}
