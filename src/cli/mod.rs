//! Command-line interface: argument parsing and dispatch to the subcommands.

mod bench;
mod generate;
mod grid;
mod info;
mod models;
mod preprocess;
mod progress;
mod serve;
mod sheet;

use clap::{Parser, Subcommand};

/// `--version`: the release, the commit it was built from and the compute back ends built in.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PENTIMENTO_BUILD"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "pentimento",
    version = VERSION,
    about = "Stable Diffusion painting app and headless generator",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: open the app with this model loaded.
    #[arg(long, global = false)]
    pub model: Option<std::path::PathBuf>,
    /// Without a subcommand: open the app with this image (as a desktop file manager passes
    /// files; the first is opened, one image per window).
    #[arg(value_name = "IMAGE")]
    pub images: Vec<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate an image from a prompt and save it as PNG (or JPEG/WebP by the --out extension).
    // Negative numbers are values (`--eta -1` is then refused by its range, on one line).
    #[command(allow_negative_numbers = true)]
    Generate(generate::GenerateArgs),
    /// Time the full-size SD 1.5 / 2.1 networks (random weights): UNet step, VAE, text
    /// encoder, TAESD preview, a whole text-to-image, peak memory.
    Bench(bench::BenchArgs),
    /// Generate a sweep (seeds, CFG, steps, samplers, …) as one labelled grid PNG.
    Grid(grid::GridArgs),
    /// Print the generation parameters of an image (PNG, JPEG, WebP; Pentimento, AUTOMATIC1111,
    /// Forge, Krita AI Diffusion, InvokeAI, ComfyUI, NovelAI, Fooocus).
    Info(info::InfoArgs),
    /// Run a ControlNet preprocessor on an image (what `generate --control MODULE:…` feeds the
    /// ControlNet) and write the result as PNG.
    Preprocess(preprocess::PreprocessArgs),
    /// List the sampler names `--sampler` accepts.
    Samplers,
    /// Serve AUTOMATIC1111's HTTP API (`/sdapi/v1`) on this machine's engine.
    Serve(serve::ServeArgs),
    /// Model files: inspect what a file is.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Grid(args)) => grid::run(args),
        Some(Command::Bench(args)) => bench::run_bench(args),
        Some(Command::Models { command }) => models::run(command),
        Some(Command::Info(args)) => info::run(args),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Preprocess(args)) => preprocess::run(args),
        Some(Command::Samplers) => {
            for kind in pentimento::engine::sampler::SamplerKind::all() {
                println!("{}", kind.name());
            }
            Ok(())
        }
        None => {
            // Refused here, not in the window: a wrong path is a one-line error like any other.
            for image in &cli.images {
                if !image.is_file() {
                    // A bare word is more likely a mistyped command than a picture.
                    let word = image.extension().is_none() && image.components().count() == 1;
                    let hint = if word { " or command (see --help)" } else { "" };
                    anyhow::bail!("{}: no such image file{hint}", image.display());
                }
            }
            pentimento::ui::run(cli.model, cli.images)
        }
    }
}

/// Text from files (PNG metadata, file names) as it may reach a terminal: control characters
/// other than newlines and tabs become U+FFFD, so an escape sequence hidden in a PNG cannot
/// retitle the window or clear the screen; `single_line` also replaces newlines.
pub fn terminal_safe(text: &str, single_line: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' if !single_line => c,
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}
