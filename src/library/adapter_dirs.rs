//! Where LoRA files are looked for by name: the user's own folder in the data folder, and
//! beside each model folder of the library the folders AUTOMATIC1111 (`models/Lora`) and
//! ComfyUI (`models/loras`) keep them in.

use std::path::PathBuf;

use super::settings::LibrarySettings;

/// The LoRA folders that exist, `extra` (given on the command line) first.
pub fn lora_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(data) = super::app_dirs::data_dir() {
        dirs.push(data.join("loras"));
    }
    let folders = LibrarySettings::default_path()
        .and_then(|p| LibrarySettings::load(&p).ok())
        .unwrap_or_default()
        .all_folders();
    for folder in folders {
        if let Some(models) = folder.parent() {
            dirs.extend(["Lora", "loras", "LyCORIS"].map(|n| models.join(n)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| d.is_dir() && seen.insert(d.clone()));
    dirs
}
