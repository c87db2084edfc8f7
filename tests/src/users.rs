//! Real local users for the end-to-end tests that need more than one uid: created once per
//! machine with `useradd` (the test runs as root), and commands run as them with `setpriv`.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

/// A local user this machine has (created by [`LocalUser::ensure`] when missing).
#[derive(Debug, Clone)]
pub struct LocalUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// `/home/<name>`, created and owned by the user.
    pub home: PathBuf,
}

/// Whether this process runs as root (creating users and switching to them needs it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

impl LocalUser {
    /// The user `name`, created (with a home directory, no password, no login shell) when this
    /// machine does not have it yet. `None`, with the reason printed, when not running as root.
    pub fn ensure(name: &str) -> Option<LocalUser> {
        if !is_root() {
            eprintln!("skipping: creating and switching to the local user {name} needs root");
            return None;
        }
        let id = |flag: &str| Command::new("id").args([flag, name]).output().expect("id runs");
        if !id("-u").status.success() {
            let made = Command::new("useradd")
                .args(["--create-home", "--shell", "/usr/sbin/nologin", name])
                .output()
                .expect("useradd runs");
            // Another test may have created it in between.
            assert!(
                made.status.success() || id("-u").status.success(),
                "useradd {name}: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        let num = |flag: &str| -> u32 {
            String::from_utf8_lossy(&id(flag).stdout).trim().parse().expect("numeric id")
        };
        let (uid, gid) = (num("-u"), num("-g"));
        let home = PathBuf::from(format!("/home/{name}"));
        if !home.is_dir() {
            std::fs::create_dir_all(&home).expect("create the home directory");
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown the home directory");
        }
        Some(LocalUser { name: name.to_owned(), uid, gid, home })
    }

    /// `program` run as this user: real and effective uid/gid switched, supplementary groups
    /// cleared, and an environment holding only `PATH`, `HOME`, `USER` and `LOGNAME` (add more with
    /// `.env(...)`), so nothing of the test's own environment leaks into the client.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .current_dir(&self.home);
        cmd
    }
}
