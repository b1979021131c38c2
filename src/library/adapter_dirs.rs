//! Where LoRA files and textual-inversion embeddings are looked for by name: the user's own
//! folders in the data folder, and beside each model folder of the library the folders
//! AUTOMATIC1111 (`models/Lora`, `embeddings` at its root) and ComfyUI (`models/loras`,
//! `models/embeddings`) keep them in.

use std::path::{Path, PathBuf};

use super::settings::LibrarySettings;

/// The LoRA folders that exist, `extra` (given on the command line) first; `library` is the
/// library's settings file (`None`: the user's).
pub fn lora_dirs(extra: &[PathBuf], library: Option<&Path>) -> Vec<PathBuf> {
    dirs(extra, library, "loras", &["Lora", "loras", "LyCORIS"], &[])
}

/// The embedding folders that exist, `extra` first.
pub fn embedding_dirs(extra: &[PathBuf], library: Option<&Path>) -> Vec<PathBuf> {
    dirs(
        extra,
        library,
        "embeddings",
        &["embeddings"],
        &["embeddings"],
    )
}

/// The ControlNet folders that exist: the data folder's `controlnet`, AUTOMATIC1111's
/// `models/ControlNet` and ComfyUI's `models/controlnet` beside library folders.
pub fn controlnet_dirs(extra: &[PathBuf], library: Option<&Path>) -> Vec<PathBuf> {
    dirs(
        extra,
        library,
        "controlnet",
        &["ControlNet", "controlnet"],
        &[],
    )
}

/// Most ControlNets listed from the folders (a folder of thousands is not browsed here).
pub const MAX_LISTED_CONTROLNETS: usize = 500;

/// The ControlNets in `dirs` (one level deep): weight files by their extension and diffusers
/// folders by their `config.json`, sorted by name.
pub fn controlnet_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    const EXTENSIONS: [&str; 5] = ["safetensors", "pth", "pt", "ckpt", "bin"];
    let mut found = vec![];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten().take(10 * MAX_LISTED_CONTROLNETS) {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let weights = kind.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
            let folder = kind.is_dir() && path.join("config.json").is_file();
            if weights || folder {
                found.push(path);
            }
        }
    }
    found.sort_by_key(|p| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    });
    found.dedup();
    found.truncate(MAX_LISTED_CONTROLNETS);
    found
}

/// `extra`, `data/own`, then for each library folder `models/NAME` (its parent's `beside`) and
/// the web UI's root `ROOT/NAME` (`above`, two levels up), those that exist, once each.
fn dirs(
    extra: &[PathBuf],
    library: Option<&Path>,
    own: &str,
    beside: &[&str],
    above: &[&str],
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(data) = super::app_dirs::data_dir() {
        dirs.push(data.join(own));
    }
    let folders = library
        .map(Path::to_path_buf)
        .or_else(LibrarySettings::default_path)
        .and_then(|p| LibrarySettings::load(&p).ok())
        .unwrap_or_default()
        .all_folders();
    for folder in folders {
        if let Some(models) = folder.parent() {
            dirs.extend(beside.iter().map(|n| models.join(n)));
            if let Some(root) = models.parent() {
                dirs.extend(above.iter().map(|n| root.join(n)));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| d.is_dir() && seen.insert(d.clone()));
    dirs
}

/// The depth preprocessor's network: `explicit` (a folder), else Depth Anything V2 Small as
/// `models pull` downloads it into the hub cache, else `depth-anything` in the data folder.
pub fn depth_model(explicit: Option<&Path>) -> Option<PathBuf> {
    depth_model_in(explicit, &super::hub::cache_dir())
}

/// `depth_model` with the hub cache at `hub_cache`.
pub fn depth_model_in(explicit: Option<&Path>, hub_cache: &Path) -> Option<PathBuf> {
    use pentimento_engine::control::depth::DEPTH_REPO;
    if let Some(e) = explicit {
        return Some(e.to_path_buf());
    }
    super::hub::cached_snapshot_in(hub_cache, DEPTH_REPO)
        .or_else(|| super::app_dirs::data_dir().map(|d| d.join("depth-anything")))
        .filter(|d| d.join("config.json").is_file())
}
