//! The key files of the Azure Arc challenge (PROTOCOLS.md §7): each unauthenticated request gets a
//! fresh random secret written to `<dir>/azbroker-<random>.key`, and the client proves it may read
//! that file by sending the contents back. File permissions *are* the access control: the file is
//! readable by the daemon's user and, when configured, one group (the real agent uses `himds`).
//!
//! The file satisfies every client's checks (§7.2): an absolute path directly in the real,
//! non-symlinked directory, a `.key` name without `=`, contents ≤ 4 KiB with no trailing newline.
//! Keys are single-use and live [`KEY_TTL`]; used, expired and (at shutdown) outstanding keys are
//! deleted. Only files named `azbroker-*.key` are ever removed, so a real Arc agent's files are
//! left alone. All functions here do blocking file I/O: call them off the async runtime.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use azbroker_core::Secret;

/// Where every Arc client insists the key file lives (Linux).
pub const ARC_TOKENS_DIR: &str = "/var/opt/azcmagent/tokens";
/// How long a challenge's key file stays valid (a client reads it within milliseconds).
pub const KEY_TTL: Duration = Duration::from_secs(30);
/// Outstanding challenges at most; the oldest is dropped beyond this, so a flood of
/// unauthenticated requests cannot fill the disk.
const MAX_OUTSTANDING: usize = 256;
const PREFIX: &str = "azbroker-";

/// The outstanding Arc challenges and their files.
#[derive(Debug)]
pub struct ArcKeys {
    dir: PathBuf,
    group: Option<u32>,
    outstanding: Mutex<VecDeque<Outstanding>>,
}

#[derive(Debug)]
struct Outstanding {
    path: PathBuf,
    secret: Secret,
    created: Instant,
}

impl ArcKeys {
    /// Key files go to `dir` (production: [`ARC_TOKENS_DIR`]), readable by `group` if given.
    pub fn new(dir: impl Into<PathBuf>, group: Option<u32>) -> Self {
        Self { dir: dir.into(), group, outstanding: Mutex::new(VecDeque::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory if needed (0750, group as configured), refuses a symlinked or
    /// non-directory path, and removes stale key files an earlier run left behind.
    pub fn prepare(&self) -> io::Result<()> {
        match fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::other(format!(
                    "{} is a symlink; Arc clients require the real directory",
                    self.dir.display()
                )));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(io::Error::other(format!("{} is not a directory", self.dir.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                fs::set_permissions(&self.dir, Permissions::from_mode(0o750))?;
                if let Some(gid) = self.group {
                    std::os::unix::fs::chown(&self.dir, None, Some(gid))?;
                }
            }
            Err(e) => return Err(e),
        }
        // Leftovers of a run that died: ours by name, and older than any live key could be (other
        // daemons on this machine may have live keys here right now).
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > KEY_TTL * 2));
            if name.starts_with(PREFIX) && name.ends_with(".key") && stale {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Writes a fresh key file and returns its path (the challenge's realm).
    pub fn issue(&self) -> io::Result<PathBuf> {
        self.sweep();
        let secret = Secret::new(random_hex(32));
        let path = self.dir.join(format!("{PREFIX}{}.key", random_hex(12)));
        let mode = if self.group.is_some() { 0o640 } else { 0o600 };
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&path)?;
        if let Some(gid) = self.group {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
            // The umask may have narrowed the mode given at creation.
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.write_all(secret.expose().as_bytes())?;
        file.sync_all()?;
        let evicted = {
            let mut out = self.lock();
            out.push_back(Outstanding { path: path.clone(), secret, created: Instant::now() });
            if out.len() > MAX_OUTSTANDING { out.pop_front() } else { None }
        };
        if let Some(old) = evicted {
            let _ = fs::remove_file(old.path);
        }
        Ok(path)
    }

    /// Consumes the challenge whose secret is `presented`: returns its file's path (for the caller
    /// to delete off the runtime), or `None` when no live challenge has that secret.
    pub fn redeem(&self, presented: &[u8]) -> Option<PathBuf> {
        let mut out = self.lock();
        let now = Instant::now();
        // Compare against every entry (constant-time each), so timing does not reveal which matched.
        let mut found = None;
        for (i, entry) in out.iter().enumerate() {
            if entry.secret.matches(presented) && now.duration_since(entry.created) <= KEY_TTL {
                found = Some(i);
            }
        }
        found.and_then(|i| out.remove(i)).map(|e| e.path)
    }

    /// Deletes the files of expired challenges.
    pub fn sweep(&self) {
        let expired: Vec<PathBuf> = {
            let mut out = self.lock();
            let now = Instant::now();
            let keep = out.iter().take_while(|e| now.duration_since(e.created) > KEY_TTL).count();
            out.drain(..keep).map(|e| e.path).collect()
        };
        for path in expired {
            let _ = fs::remove_file(path);
        }
    }

    /// Deletes every outstanding key file (shutdown).
    pub fn clear(&self) {
        let all: Vec<PathBuf> = self.lock().drain(..).map(|e| e.path).collect();
        for path in all {
            let _ = fs::remove_file(path);
        }
    }

    /// Outstanding challenges (for tests and status).
    pub fn outstanding(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outstanding>> {
        self.outstanding.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `bytes` random bytes as lowercase hex (no `=`, no whitespace: safe in a realm and a file).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system RNG failing is not recoverable for a credential broker.
    aws_lc_rs::rand::fill(&mut buf).expect("system random number generator is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn key_files_follow_every_clients_rules_and_are_single_use() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = ArcKeys::new(tmp.path().join("tokens"), None);
        keys.prepare().unwrap();
        assert_eq!(fs::metadata(keys.dir()).unwrap().mode() & 0o777, 0o750);
        let path = keys.issue().unwrap();
        assert_eq!(path.parent().unwrap(), keys.dir());
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(PREFIX) && name.ends_with(".key") && !name.contains('='), "{name}");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let contents = fs::read(&path).unwrap();
        assert!(contents.len() <= 4096 && !contents.ends_with(b"\n"));
        assert_eq!(keys.redeem(b"wrong"), None);
        assert_eq!(keys.redeem(&contents), Some(path.clone()));
        assert_eq!(keys.redeem(&contents), None, "single use");
        assert_eq!(keys.outstanding(), 0);
    }

    #[test]
    fn group_readable_when_a_group_is_configured() {
        let tmp = tempfile::tempdir().unwrap();
        let gid = fs::metadata("/proc/self").unwrap().gid();
        let keys = ArcKeys::new(tmp.path().join("t"), Some(gid));
        keys.prepare().unwrap();
        let path = keys.issue().unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o640, gid));
    }

    #[test]
    fn symlinked_directory_is_refused_and_leftovers_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        assert!(ArcKeys::new(tmp.path().join("link"), None).prepare().is_err());
        let old = std::time::SystemTime::now() - KEY_TTL * 3;
        for name in ["azbroker-old.key", "agent.key", "azbroker-live.key"] {
            let f = fs::File::create(real.join(name)).unwrap();
            if name != "azbroker-live.key" {
                f.set_modified(old).unwrap();
            }
        }
        ArcKeys::new(&real, None).prepare().unwrap();
        assert!(!real.join("azbroker-old.key").exists());
        assert!(real.join("agent.key").exists(), "files that are not ours stay");
        assert!(real.join("azbroker-live.key").exists(), "another daemon's live key stays");
    }

    #[test]
    fn clear_and_eviction_delete_files() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = ArcKeys::new(tmp.path().join("t"), None);
        keys.prepare().unwrap();
        let first = keys.issue().unwrap();
        for _ in 0..MAX_OUTSTANDING {
            keys.issue().unwrap();
        }
        assert!(!first.exists(), "the oldest beyond the bound is dropped");
        assert_eq!(keys.outstanding(), MAX_OUTSTANDING);
        keys.clear();
        assert_eq!(fs::read_dir(keys.dir()).unwrap().count(), 0);
    }
}
