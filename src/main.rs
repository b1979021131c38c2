//! `pentimento`: the headless CLI on the same engine as the app.

// On Windows a GUI program: no console window opens beside the app started from the Start menu
// or Explorer. Started from a terminal, the CLI writes to that terminal (`attach_console`).
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    attach_console();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // Bad input is one line (clap adds a tip and the usage below it); the values an
            // option takes, which clap puts on a line of its own, stay on it.
            let text = e.render().to_string();
            let mut line = text
                .lines()
                .next()
                .unwrap_or("error: bad arguments")
                .trim()
                .to_string();
            for extra in text.lines().skip(1).map(str::trim) {
                if extra.starts_with("[possible values:") || extra.starts_with("tip: a similar") {
                    line.push(' ');
                    line.push_str(extra);
                }
            }
            eprintln!("{} (see --help)", cli::terminal_safe(&line, true));
            return ExitCode::from(2);
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the outermost context and its causes, each cause's first line only (a
            // candle error under RUST_BACKTRACE carries its backtrace on the lines below), a
            // cause already quoted by the one before it left out.
            let mut line = String::new();
            for cause in err.chain() {
                let text = cause.to_string();
                let first = text.lines().next().unwrap_or_default().trim();
                if first.is_empty() || line.contains(first) {
                    continue;
                }
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(first);
            }
            eprintln!("error: {}", cli::terminal_safe(&line, true));
            ExitCode::from(2)
        }
    }
}

/// A Windows GUI program has no console; output goes to the terminal it was started from, if
/// any (none when started from Explorer: the app's window is all there is).
#[cfg(windows)]
fn attach_console() {
    use windows_sys::Win32::System::Console::{AttachConsole, ATTACH_PARENT_PROCESS};
    // SAFETY: takes a process id, touches none of our memory, fails harmlessly without a parent
    // console.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}

#[cfg(not(windows))]
fn attach_console() {}
