//! Where Pentimento keeps its own files. One place decides, so the app, the CLI and the tests
//! agree: `$PENTIMENTO_CONFIG_DIR` and `$PENTIMENTO_DATA_DIR` override the platform's folders,
//! and a data folder set alone holds the settings too (a user who points Pentimento at one folder
//! expects nothing written anywhere else).

use std::path::PathBuf;

/// Settings (`library.json`): `$PENTIMENTO_CONFIG_DIR`, else `$PENTIMENTO_DATA_DIR`, else the
/// platform's config folder (`~/.config/pentimento` on Linux).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = non_empty_var("PENTIMENTO_CONFIG_DIR") {
        return Some(d);
    }
    if let Some(d) = non_empty_var("PENTIMENTO_DATA_DIR") {
        return Some(d);
    }
    Some(dirs::config_dir()?.join("pentimento"))
}

/// History, autosaves: `$PENTIMENTO_DATA_DIR`, else the platform's data folder
/// (`~/.local/share/pentimento` on Linux).
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = non_empty_var("PENTIMENTO_DATA_DIR") {
        return Some(d);
    }
    Some(dirs::data_dir()?.join("pentimento"))
}

fn non_empty_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
