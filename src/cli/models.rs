//! `pentimento models …`: what model files are.

use std::path::PathBuf;

use clap::Subcommand;
use pentimento::engine::model::inspect::inspect;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Family, UNet channels, prediction type, dtype, components, size and hash of a model
    /// file or folder, read from its header only.
    Inspect {
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Inspect { path, json } => {
            let report = inspect(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
    }
}
