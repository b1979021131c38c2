//! Command-line interface: argument parsing and dispatch to the subcommands.

mod generate;
mod models;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pentimento",
    version,
    about = "Stable Diffusion painting app and headless generator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate an image from a prompt and save it as PNG.
    Generate(generate::GenerateArgs),
    /// List the sampler names `--sampler` accepts.
    Samplers,
    /// Model files: inspect what a file is.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Models { command }) => models::run(command),
        Some(Command::Samplers) => {
            for kind in pentimento::engine::sampler::SamplerKind::all() {
                println!("{}", kind.name());
            }
            Ok(())
        }
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            println!();
            Ok(())
        }
    }
}
