//! Shell completions and the man page, generated from the clap definition in `cli.rs`, so they
//! can never drift from the real flags. Packaging ships their output (see `packaging/`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::args::Cli;

/// `azbroker completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "azbroker", &mut out);
    out.flush().context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// `azbroker man`: `azbroker(1)` in roff on stdout, with a section per subcommand.
pub fn man() -> Result<ExitCode> {
    let mut page = Vec::new();
    render_man(&mut page)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page).and_then(|()| out.flush()).context("cannot write the man page")?;
    Ok(ExitCode::SUCCESS)
}

fn render_man(out: &mut Vec<u8>) -> Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        writeln!(out, ".TP\n\\fBazbroker {}\\fR", sub.get_name())?;
        writeln!(out, "{}", roff_escape(&sub.get_about().map(ToString::to_string).unwrap_or_default()))?;
        for arg in sub.get_arguments().filter(|a| !a.is_global_set() && a.get_id() != "help") {
            let flag = match (arg.get_long(), arg.get_short()) {
                (Some(l), _) => format!("\\-\\-{}", l.replace('-', "\\-")),
                (None, Some(s)) => format!("\\-{s}"),
                (None, None) => arg.get_id().as_str().to_uppercase(),
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            writeln!(out, ".RS\n.TP\n{flag}\n{}\n.RE", roff_escape(&help))?;
        }
    }
    writeln!(
        out,
        ".SH FILES\n.TP\n/etc/azbroker/config.toml, ~/.config/azbroker/config.toml\nThe config file; every key is documented in the example config shipped with the package.\n\
         .TP\n/var/lib/azbroker, ~/.local/state/azbroker\nState (0700): generated secrets.\n\
         .TP\n/run/azbroker/admin.sock, $XDG_RUNTIME_DIR/azbroker/admin.sock\nThe admin socket (0600) used by status, reload and refresh."
    )?;
    man.render_version_section(out)?;
    Ok(())
}

/// Escapes text for a roff body line (backslashes; a leading dot or quote).
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_lists_every_subcommand_and_serve_flag() {
        let mut page = Vec::new();
        render_man(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH azbroker"), "{page}");
        for sub in Cli::command().get_subcommands().filter(|s| s.get_name() != "help") {
            assert!(page.contains(&format!("azbroker {}", sub.get_name())), "{} missing", sub.get_name());
        }
        assert!(page.contains("\\-\\-watch\\-config"), "serve's flags are listed");
    }
}
