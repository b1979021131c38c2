//! `pentimento models …`: what model files are.

use std::path::PathBuf;

use clap::Subcommand;
use pentimento::engine::model::inspect::human_size;
use pentimento::engine::model::inspect::inspect_with;
use pentimento::engine::model::ConfigChoice;
use pentimento::library::hub::{self, Hub, PullEvent};
use pentimento::library::scan::{scan, Source};
use pentimento::library::settings::LibrarySettings;

use super::progress::DownloadProgress;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Family, UNet channels, prediction type, dtype, components, size and hash of a model
    /// file or folder, read from its header only, and what decided each setting (file, YAML,
    /// rule, test forward).
    Inspect {
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The checkpoint's LDM config YAML [default: NAME.yaml beside it, if any].
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// Models in the hub cache and in the folders added with `add-folder` (and
    /// $PENTIMENTO_MODEL_DIRS): name, type, size, hash.
    List {
        /// Also look in this folder (repeatable).
        #[arg(long = "folder")]
        folders: Vec<PathBuf>,
        /// Compute missing model hashes (reads each file once; cached afterwards).
        #[arg(long)]
        hash: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remember a folder of models (e.g. AUTOMATIC1111's models/Stable-diffusion).
    AddFolder { folder: PathBuf },
    /// Forget a folder added with add-folder.
    RemoveFolder { folder: PathBuf },
}

fn settings_path() -> anyhow::Result<PathBuf> {
    LibrarySettings::default_path().ok_or_else(|| {
        anyhow::anyhow!(
            "no config folder on this system: set PENTIMENTO_CONFIG_DIR or PENTIMENTO_DATA_DIR"
        )
    })
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Inspect { path, json, config } => {
            let choice = config.map(ConfigChoice::File).unwrap_or_default();
            let report = inspect_with(&path, &choice)?;
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
                    let n = files.len();
                    let s = if n == 1 { "" } else { "s" };
                    eprintln!("{n} file{s} from {}", hub.endpoint())
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
        ModelsCommand::List {
            folders,
            hash,
            json,
        } => {
            // A folder named here that is not there is a typo to say (as add-folder says it);
            // a remembered one that went away (an unplugged disk) is only skipped below.
            if let Some(missing) = folders.iter().find(|f| !f.is_dir()) {
                anyhow::bail!("--folder {}: not a folder", missing.display());
            }
            let settings = LibrarySettings::load(&settings_path()?)?;
            let mut all = settings.all_folders();
            all.extend(folders);
            let mut lib = scan(Some(&hub::cache_dir()), &all);
            if hash {
                for m in lib
                    .models
                    .iter_mut()
                    .filter(|m| m.container != "diffusers folder")
                {
                    m.hash = pentimento::engine::model::hash::model_hash(&m.path).ok();
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&lib)?);
            } else {
                if lib.models.is_empty() {
                    eprintln!(
                        "no models found in {} or {} folder(s); `pentimento models pull sd15` downloads one",
                        hub::cache_dir().display(),
                        all.len()
                    );
                }
                for m in &lib.models {
                    let from = match &m.source {
                        Source::Hub { .. } => "hub".to_string(),
                        Source::Folder { folder } => folder.display().to_string(),
                    };
                    let safe = |s: &str| super::terminal_safe(s, true);
                    println!(
                        "{:40} {:28} {:>10}  {:10}  {}  ({})",
                        safe(&m.name),
                        m.kind(),
                        human_size(m.bytes),
                        m.hash.as_deref().unwrap_or("-"),
                        safe(&m.path.display().to_string()),
                        safe(&from)
                    );
                }
                for p in &lib.problems {
                    eprintln!(
                        "skipped {}: {}",
                        super::terminal_safe(&p.path.display().to_string(), true),
                        super::terminal_safe(&p.message, true)
                    );
                }
            }
            Ok(())
        }
        ModelsCommand::AddFolder { folder } => {
            let path = settings_path()?;
            if LibrarySettings::update(&path, |s| s.add(&folder))? {
                eprintln!("added {} ({})", folder.display(), path.display());
            } else {
                eprintln!("{} is already in the library", folder.display());
            }
            Ok(())
        }
        ModelsCommand::RemoveFolder { folder } => {
            let path = settings_path()?;
            if !LibrarySettings::update(&path, |s| Ok(s.remove(&folder)))? {
                anyhow::bail!("{} is not in the library", folder.display());
            }
            println!("removed {}", folder.display());
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
