//! The machine and tools a run happened on, recorded beside the figures: CPU, cores, memory,
//! kernel, load averages before and after, tool versions and the source revision.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// `uptime` at the start and at the end of the run.
    pub uptime_before: String,
    pub uptime_after: String,
    pub tools: Vec<(String, String)>,
    pub revision: String,
}

impl Machine {
    pub fn probe(root: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let first_line = |out: String| out.lines().next().unwrap_or_default().trim().to_owned();
        let tools = [
            ("wrk", vec!["-v"]),
            ("oha", vec!["--version"]),
            ("nginx", vec!["-v"]),
            ("rustc", vec!["--version"]),
        ]
        .into_iter()
        .map(|(tool, args)| {
            let program = if tool == "oha" { crate::loadgen::oha_binary() } else { tool.into() };
            (tool.to_owned(), first_line(command_text(Command::new(program).args(args))))
        })
        .collect();
        Self {
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: meminfo
                .lines()
                .find_map(|l| {
                    l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()
                })
                .map_or(0.0, |kib| kib / 1024.0 / 1024.0),
            kernel: first_line(command_text(Command::new("uname").args(["-sr"]))),
            uptime_before: uptime(),
            uptime_after: String::new(),
            tools,
            revision: first_line(command_text(
                Command::new("git").arg("-C").arg(root).args(["describe", "--always", "--dirty"]),
            )),
        }
    }
}

/// `uptime`'s line (time, up, users, load averages).
pub fn uptime() -> String {
    command_text(&mut Command::new("uptime")).trim().to_owned()
}

/// stdout, or stderr when stdout is empty (nginx and wrk print versions there); empty on failure.
fn command_text(cmd: &mut Command) -> String {
    match cmd.output() {
        Ok(o) if !o.stdout.is_empty() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(_) => String::new(),
    }
}
