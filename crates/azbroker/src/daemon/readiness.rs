//! Telling the service manager how the daemon is doing (`sd_notify`): `READY=1` once listeners
//! are bound and the config is loaded, `RELOADING=1`/`READY=1` around a reload, `STOPPING=1` on
//! the way out, `STATUS=` lines for `systemctl status`, and `WATCHDOG=1` pings at half the
//! `WatchdogSec=` interval.
//!
//! Everything here is a no-op without `$NOTIFY_SOCKET` (not under systemd), and a failed
//! notification is logged, never fatal: the daemon serves either way.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` before a config reload.
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading the config")]);
}

/// `STOPPING=1` once shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining in-flight requests")]);
}

/// The ping interval when the service manager asked for a watchdog (`WATCHDOG_USEC`, for us).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| (timeout / 2).max(Duration::from_millis(10)))
}

/// Pings `WATCHDOG=1` every `interval` until `cancel` fires. The pings come from the runtime
/// that serves requests, so a wedged runtime stops them and systemd restarts the daemon.
pub async fn watchdog(interval: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
