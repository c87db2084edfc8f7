//! The daemon's own directories (runtime and state): created by the daemon, or verified before
//! any use — a real directory (not a symbolic link), owned by the daemon's uid, never writable by
//! group or others — and then held open, so that files are created relative to the verified
//! directory with no-follow, exclusive semantics. A directory another local user made (the
//! `/tmp/azbroker-run-<uid>` fallback is the classic case) is refused, naming it; nothing in it is
//! ever followed or written.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{OFlag, openat, renameat};
use nix::libc;
use nix::sys::stat::Mode;
use nix::unistd::unlinkat;

use crate::paths;

/// Group or other may write: never allowed in a directory of ours.
const GROUP_OR_OTHER_WRITE: u32 = 0o022;

/// A directory verified to be the daemon's own, held open.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    dir: File,
}

impl OwnedDir {
    /// Creates `path` (0700; its parents as needed) or takes the existing directory after
    /// verifying it, then narrows read/search bits beyond `max_mode` (0700 for a private
    /// directory; 0755 for a system daemon's runtime directory that users must reach).
    pub fn prepare(path: &Path, max_mode: u32) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create directory {}", path.display())),
        }
        let owned = Self::existing(path)?;
        let mode = owned.dir.metadata()?.mode() & 0o777;
        if mode & !max_mode != 0 {
            owned
                .dir
                .set_permissions(Permissions::from_mode(mode & max_mode))
                .with_context(|| format!("cannot narrow the mode of {}", path.display()))?;
        }
        Ok(owned)
    }

    /// Opens the existing directory `path` and verifies it; never creates or changes anything.
    pub fn existing(path: &Path) -> Result<Self> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                // With O_DIRECTORY, Linux reports a final symbolic link as ENOTDIR.
                Some(libc::ELOOP | libc::ENOTDIR) if is_symlink(path) => anyhow::anyhow!(
                    "refusing the directory {}: it is a symbolic link (another local user may have planted it); \
                     remove it, or point runtime_dir/state_dir at a directory of your own",
                    path.display()
                ),
                Some(libc::ENOTDIR) => anyhow::anyhow!("{} exists and is not a directory", path.display()),
                _ => anyhow::Error::new(e).context(format!("cannot open directory {}", path.display())),
            })?;
        let meta = dir.metadata().with_context(|| format!("cannot inspect {}", path.display()))?;
        let me = paths::current_uid();
        if meta.uid() != me {
            // PermissionDenied: a client command then asks the daemon instead (`cli::client_env`).
            let why = format!(
                "refusing the directory {}: it is owned by uid {}, not by this daemon's user (uid {me}); another \
                 local user may have made it. Remove it, or set XDG_RUNTIME_DIR or runtime_dir/state_dir to a \
                 directory of your own",
                path.display(),
                meta.uid()
            );
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why).into());
        }
        if meta.mode() & GROUP_OR_OTHER_WRITE != 0 {
            bail!(
                "refusing the directory {}: group or other users may write to it (mode {:04o}); other users may \
                 have planted files in it. Remove it and let the daemon create it",
                path.display(),
                meta.mode() & 0o7777
            );
        }
        Ok(Self { path: path.to_owned(), dir })
    }

    /// The most a runtime directory may grant: 0755 for a system daemon or one with
    /// `admin_group` (its readers must reach the admin socket), else 0700.
    pub fn runtime_dir_mode(config: &crate::config::Config) -> u32 {
        if paths::is_system() || config.server.hardening.admin_group.is_some() { 0o755 } else { 0o700 }
    }

    /// Opens (creating it 0600 when absent) the file `name` in this directory for appending —
    /// never through a symbolic link. For lock and log files, which are not replaced whole.
    pub fn open_append(&self, name: &str) -> Result<File> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(self.dir.as_fd(), name, flags, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot open {}", self.path.join(name).display()))?;
        Ok(File::from(fd))
    }

    /// Atomically replaces `name` in this directory with `bytes` at `mode`: a temporary file made
    /// with `O_CREAT|O_EXCL|O_NOFOLLOW` relative to the open directory, fsync, `renameat`, fsync of
    /// the directory. Never follows a symbolic link; returns the file's path.
    pub fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf> {
        let path = self.path.join(name);
        let tmp = format!(".{name}.{}.tmp", crate::daemon::state::random_token());
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(self.dir.as_fd(), tmp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot create a temporary file in {}", self.path.display()))?;
        let mut file = File::from(fd);
        let written = file
            .write_all(bytes)
            .and_then(|()| file.set_permissions(Permissions::from_mode(mode)))
            .and_then(|()| file.sync_all())
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                renameat(self.dir.as_fd(), tmp.as_str(), self.dir.as_fd(), name).map_err(anyhow::Error::from)
            });
        if let Err(e) = written {
            let _ = unlinkat(self.dir.as_fd(), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            return Err(e.context(format!("cannot write {}", path.display())));
        }
        let _ = self.dir.sync_all();
        Ok(path)
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_symlink_or_an_open_directory_is_refused_and_files_never_follow_links() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        let dir = OwnedDir::prepare(&real, 0o700).unwrap();
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o777, 0o700);

        // A link planted where a file goes is replaced, its target untouched.
        let victim = base.path().join("victim");
        fs::write(&victim, "mine").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, real.join("cert.pem")).unwrap();
        dir.write("cert.pem", b"public", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "mine");
        assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(real.join("cert.pem")).unwrap(), "public");
        assert_eq!(fs::symlink_metadata(real.join("cert.pem")).unwrap().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(&real).unwrap().count(), 1, "no temporary file left");

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = OwnedDir::prepare(&link, 0o700).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains(&link.display().to_string()), "{err}");

        let open = base.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let err = OwnedDir::prepare(&open, 0o700).unwrap_err().to_string();
        assert!(err.contains("mode 0777") && err.contains(&open.display().to_string()), "{err}");

        // Readable by others but not writable: narrowed to the allowed mode.
        fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        OwnedDir::prepare(&open, 0o700).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        OwnedDir::prepare(&open, 0o755).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o755);

        // Made by another user (root can hand it over; as anyone else, owning it is the point).
        if paths::current_uid() == 0 {
            std::os::unix::fs::chown(&open, Some(65534), Some(65534)).unwrap();
            let err = OwnedDir::prepare(&open, 0o700).unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534") && err.contains(&open.display().to_string()), "{err}");
        } else {
            eprintln!("skipping the foreign-owner case: it needs root to chown a directory");
        }
    }
}
