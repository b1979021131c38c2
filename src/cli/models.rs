//! `pentimento models …`: what model files are.

use std::path::PathBuf;

use clap::Subcommand;
use pentimento::engine::model::inspect::inspect;
use pentimento::library::hub::{self, Hub, PullEvent};

use super::progress::DownloadProgress;

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
    /// Download a model from the Hugging Face hub into the hub cache (shared with other tools):
    /// a short name (sd15, sd15-inpainting, sd21, sd2-inpainting, taesd) or any owner/name.
    /// Only the files a pipeline needs are fetched; an interrupted download resumes.
    Pull {
        repo: String,
        /// Branch, tag or commit.
        #[arg(long)]
        revision: Option<String>,
        /// Fetch only these files (e.g. a single-file checkpoint); repeatable.
        #[arg(long = "file")]
        files: Vec<String>,
        /// The hub's address [default: $HF_ENDPOINT or https://huggingface.co].
        #[arg(long)]
        endpoint: Option<String>,
        /// The hub cache [default: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// The checkpoints `pull` knows by short name.
    Known,
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
        ModelsCommand::Pull {
            repo,
            revision,
            files,
            endpoint,
            cache_dir,
        } => {
            let hub = Hub::new(endpoint, cache_dir)?;
            let mut bar = DownloadProgress::new();
            let mut on_event = |e: PullEvent| match e {
                PullEvent::Planned { files } => {
                    eprintln!("{} files from {}", files.len(), hub.endpoint())
                }
                PullEvent::Cached { file } => eprintln!("{file}: already downloaded"),
                PullEvent::Progress {
                    file,
                    done,
                    total,
                    bytes_per_second,
                } => bar.update(&file, done, total, bytes_per_second),
                PullEvent::Downloaded { file } => {
                    bar.finish();
                    eprintln!("{file}: done");
                }
            };
            let path = hub.pull(&repo, revision.as_deref(), &files, &mut on_event)?;
            bar.finish();
            println!("{}", path.display());
            Ok(())
        }
        ModelsCommand::Known => {
            for (short, id, what) in hub::KNOWN {
                println!("{short:16} {id:50} {what}");
            }
            Ok(())
        }
    }
}
