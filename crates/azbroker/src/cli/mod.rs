//! The command-line half of the binary: the clap definition (`args`) and the commands that run
//! in the user's shell — most of them talk to the running daemon over its admin socket
//! (`admin_client`) and only present what it answers; `env`/`run` print or apply the client
//! environment; `doctor` diagnoses; `completions` renders the clap definition.
//!
//! Nothing here serves tokens or holds a login: that is the daemon's half (`crate::daemon`).

pub(crate) mod admin_client;
pub(crate) mod admin_commands;
pub(crate) mod args;
pub(crate) mod autostart;
pub(crate) mod client_env;
pub(crate) mod commands;
pub(crate) mod completions;
pub(crate) mod doctor;
pub(crate) mod key;
pub(crate) mod login_commands;
pub(crate) mod personal_commands;
pub(crate) mod refresh;
pub(crate) mod workspace_commands;
