//! Where azbroker keeps its files: XDG locations for a user daemon, `/etc`, `/var/lib` and `/run`
//! for a system (root) daemon — and, first of all, the directories systemd made for the unit
//! (`$CONFIGURATION_DIRECTORY`, `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`), so a service with
//! `DynamicUser=` or `User=` finds them without extra settings.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The effective uid of this process (read from procfs; no libc needed).
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// True when running as root: system paths are used.
pub fn is_system() -> bool {
    current_uid() == 0
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn xdg(var: &str, home_rel: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(home_rel)))
}

/// The first directory of a systemd `*_DIRECTORY` variable (they are colon-separated lists).
fn systemd_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let first = v.to_str()?.split(':').next()?.to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// Default config file: `$CONFIGURATION_DIRECTORY/config.toml` under systemd,
/// `/etc/azbroker/config.toml` as root, else `$XDG_CONFIG_HOME/azbroker/config.toml`.
pub fn default_config_file() -> PathBuf {
    if let Some(d) = systemd_dir("CONFIGURATION_DIRECTORY") {
        return d.join("config.toml");
    }
    if is_system() {
        return PathBuf::from("/etc/azbroker/config.toml");
    }
    xdg("XDG_CONFIG_HOME", ".config")
        .map(|d| d.join("azbroker/config.toml"))
        .unwrap_or_else(|| PathBuf::from("/etc/azbroker/config.toml"))
}

/// Default state directory: `$STATE_DIRECTORY` under systemd, `/var/lib/azbroker` as root, else
/// `$XDG_STATE_HOME/azbroker`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = systemd_dir("STATE_DIRECTORY") {
        return d;
    }
    if is_system() {
        return PathBuf::from("/var/lib/azbroker");
    }
    xdg("XDG_STATE_HOME", ".local/state")
        .map(|d| d.join("azbroker"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/azbroker-state-{}", current_uid())))
}

/// A system (root) daemon's runtime directory, where its admin socket is.
pub const SYSTEM_RUNTIME_DIR: &str = "/run/azbroker";

/// Default runtime directory: `$RUNTIME_DIRECTORY` under systemd, `/run/azbroker` as root, else
/// `$XDG_RUNTIME_DIR/azbroker`, else `/tmp/azbroker-run-<uid>` — which another user may have made
/// first, so the daemon uses no runtime or state directory before `daemon::owned_dir` verified it.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(d) = systemd_dir("RUNTIME_DIRECTORY") {
        return d;
    }
    if is_system() {
        return PathBuf::from(SYSTEM_RUNTIME_DIR);
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("azbroker"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/azbroker-run-{}", current_uid())))
}
