//! The key files of the Azure Arc challenge (PROTOCOLS.md §7): each unauthenticated request gets a
//! fresh random secret written to `<dir>/azbroker-<random>.key`, and the client proves it may read
//! that file by sending the contents back. File permissions *are* the access control: the file is
//! readable by the daemon's user and, when configured, one group (the real agent uses `himds`).
//!
//! The file satisfies every client's checks (§7.2): an absolute path directly in the real,
//! non-symlinked directory, a `.key` name without `=`, contents ≤ 4 KiB with no trailing newline.
//! Keys are single-use and live [`KEY_TTL`]; used, expired (the daemon sweeps every
//! [`SWEEP_EVERY`]) and (at shutdown) outstanding keys are deleted. Only files named
//! `azbroker-*.key` are ever removed, so a real Arc agent's files are left alone.
//!
//! Challenges are unauthenticated, so each local user has a quota ([`PER_UID`] outstanding): a
//! user past it loses their own oldest key, never anyone else's. When every slot of the overall
//! bound is taken by live keys, a new challenge is refused ([`io::ErrorKind::QuotaExceeded`])
//! rather than evicting one. All functions here do blocking file I/O: call them off the async
//! runtime.

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
/// How often the daemon deletes expired key files.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Outstanding challenges of one caller (uid; callers of unknown uid share one quota) at most;
/// that caller's oldest is dropped beyond this.
pub const PER_UID: usize = 16;
/// Outstanding challenges at most, so a flood from many users cannot fill the disk.
const MAX_OUTSTANDING: usize = 1024;
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
    uid: Option<u32>,
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

    /// Writes a fresh key file for a challenge of `uid` and returns its path (the challenge's
    /// realm). Refused with [`io::ErrorKind::QuotaExceeded`] when every slot holds a live key.
    pub fn issue(&self, uid: Option<u32>) -> io::Result<PathBuf> {
        self.sweep();
        if self.lock().len() >= MAX_OUTSTANDING {
            return Err(io::Error::new(io::ErrorKind::QuotaExceeded, "too many outstanding Arc challenges"));
        }
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
            out.push_back(Outstanding { uid, path: path.clone(), secret, created: Instant::now() });
            // Over its quota, this caller's own oldest key goes (the queue is oldest first).
            let mine = out.iter().filter(|e| e.uid == uid).count();
            if mine > PER_UID {
                out.iter().position(|e| e.uid == uid).and_then(|i| out.remove(i))
            } else if out.len() > MAX_OUTSTANDING {
                // Others issued meanwhile: the bound holds whatever happens.
                out.pop_front()
            } else {
                None
            }
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
        let path = keys.issue(None).unwrap();
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
        let path = keys.issue(None).unwrap();
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
        let first = keys.issue(None).unwrap();
        for _ in 0..PER_UID {
            keys.issue(None).unwrap();
        }
        assert!(!first.exists(), "the caller's oldest beyond its quota is dropped");
        assert_eq!(keys.outstanding(), PER_UID);
        keys.clear();
        assert_eq!(fs::read_dir(keys.dir()).unwrap().count(), 0);
    }

    #[test]
    fn one_callers_flood_evicts_only_its_own_keys_and_a_full_table_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = ArcKeys::new(tmp.path().join("t"), None);
        keys.prepare().unwrap();
        let roots = keys.issue(Some(0)).unwrap();
        let secret = fs::read(&roots).unwrap();
        for _ in 0..(MAX_OUTSTANDING * 2) {
            keys.issue(Some(1000)).unwrap();
        }
        assert_eq!(keys.outstanding(), PER_UID + 1);
        assert_eq!(keys.redeem(&secret), Some(roots.clone()), "root's key survives another uid's flood");
        fs::remove_file(roots).unwrap();
        // Many users at once fill the table: then new challenges are refused, live keys stay.
        let mut refused = 0;
        for uid in 1..=(MAX_OUTSTANDING as u32 / PER_UID as u32 + 2) {
            for _ in 0..PER_UID {
                if let Err(e) = keys.issue(Some(uid)) {
                    assert_eq!(e.kind(), io::ErrorKind::QuotaExceeded);
                    refused += 1;
                }
            }
        }
        assert!(refused > 0);
        assert_eq!(keys.outstanding(), MAX_OUTSTANDING);
        assert_eq!(fs::read_dir(keys.dir()).unwrap().count(), MAX_OUTSTANDING);
    }
}
