//! `serve --watch-config`: reloads the config when its file changes, through the same reload
//! path as SIGHUP and `azbroker reload` (so a broken file is rejected and the old config keeps
//! serving).
//!
//! It watches the file's *directory*, not the file: editors and config managers replace the
//! file (write a temporary, rename it over), and Kubernetes ConfigMap volumes swap a symlink,
//! all of which a watch on the old inode would miss. Events are debounced, and a reload is asked
//! for only when the file's contents actually changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::daemon::serve::ReloadRequest;

/// How long the directory must be quiet before a change counts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `config` until `cancel` fires; changes become reload requests on `reload_tx`.
pub fn spawn(config: &Path, reload_tx: mpsc::Sender<ReloadRequest>, cancel: CancellationToken) -> Result<()> {
    let file = std::path::absolute(config).with_context(|| format!("cannot resolve {}", config.display()))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let (tx, mut changed) = mpsc::unbounded_channel::<()>();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |events: DebounceEventResult| match events {
        Ok(events) if !events.is_empty() => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "config file watch error");
            }
        }
    })
    .context("cannot start watching the config file")?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tracing::info!(config = %file.display(), "watching the config file for changes");
    let mut last = digest(&file);
    tokio::spawn(async move {
        // Owned here so the watch lasts as long as this task.
        let _debouncer = debouncer;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                event = changed.recv() => if event.is_none() { return },
            }
            let now = digest(&file);
            if now == last || now.is_none() {
                continue; // touched but unchanged, or removed (a rename in progress)
            }
            last = now;
            tracing::info!(config = %file.display(), "config file changed; reloading");
            let (done, outcome) = oneshot::channel();
            if reload_tx.send(done).await.is_err() {
                return;
            }
            // The reload path logs the outcome itself.
            let _ = outcome.await;
        }
    });
    Ok(())
}

fn digest(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| azbroker_core::secret::sha256_hex(&bytes))
}
