//! `pentimento`: the headless CLI on the same engine as the app.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the outermost context and its causes.
            let causes: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            let mut line = causes.join(": ");
            line = line.replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::from(2)
        }
    }
}
