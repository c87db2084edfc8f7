//! The upstream stand-in: the testkit's fake Entra ID on a runtime of its own (two worker
//! threads, so signing tokens for a cache fill does not wait behind the benchmark's own tasks),
//! with the benchmark's app registered.

use std::sync::mpsc;

use anyhow::{Context, Result};
use azbroker_testkit::FakeEntra;

use crate::procs::{CLIENT_ID, CLIENT_SECRET};

/// A running fake authority; stops when dropped.
pub struct Authority {
    pub entra: FakeEntra,
    _stop: mpsc::Sender<()>,
}

impl Authority {
    pub fn start() -> Result<Self> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (handle_tx, handle_rx) = mpsc::channel();
        std::thread::Builder::new().name("testkit".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let entra = match FakeEntra::start().await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(entra.clone()));
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                entra.shutdown();
            });
        })?;
        let entra = handle_rx.recv().context("testkit thread ended")?.context("start the testkit")?;
        entra.register_app(CLIENT_ID, CLIENT_SECRET);
        Ok(Self { entra, _stop: stop_tx })
    }
}
