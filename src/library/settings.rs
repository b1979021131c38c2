//! The folders a user keeps models in (AUTOMATIC1111's `models/Stable-diffusion`, ComfyUI's
//! `models/checkpoints`, …), remembered in `library.json` in the user's config folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::app_dirs;

/// A list of folders is a few kilobytes; a file far larger is not ours.
const MAX_SETTINGS_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibrarySettings {
    pub folders: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid library settings ({source}); fix or delete the file")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}: not a folder")]
    NotAFolder(PathBuf),
}

impl LibrarySettings {
    /// `library.json` in the config folder ([`app_dirs::config_dir`]).
    pub fn default_path() -> Option<PathBuf> {
        Some(app_dirs::config_dir()?.join("library.json"))
    }

    /// The saved settings; none saved yet is an empty library, a damaged file an error (so
    /// saving over it never loses the user's list silently).
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        match pentimento_engine::regular_file::read_to_string(path, MAX_SETTINGS_BYTES) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
                path: path.into(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SettingsError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Writes the settings atomically (a kill or a full disk leaves the previous list).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let io = |source| SettingsError::Io {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self)
            .map_err(std::io::Error::other)
            .map_err(io)?;
        pentimento_engine::atomic_file::write(path, text.as_bytes()).map_err(io)
    }

    /// Loads, changes and saves the settings at `path` holding a lock on `library.json.lock`, so
    /// concurrent writers (two CLI runs, the app and the CLI) never lose each other's changes.
    pub fn update<T>(
        path: &Path,
        change: impl FnOnce(&mut Self) -> Result<T, SettingsError>,
    ) -> Result<T, SettingsError> {
        let io = |source| SettingsError::Io {
            path: path.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("json.lock"))
            .map_err(io)?;
        // Released when `lock` is dropped, also if this process dies.
        lock.lock().map_err(io)?;
        let mut settings = Self::load(path)?;
        let out = change(&mut settings)?;
        settings.save(path)?;
        Ok(out)
    }

    /// Adds a folder (absolute, once). Returns false when it was already there.
    pub fn add(&mut self, folder: &Path) -> Result<bool, SettingsError> {
        if !folder.is_dir() {
            return Err(SettingsError::NotAFolder(folder.into()));
        }
        let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.into());
        if self.folders.contains(&folder) {
            return Ok(false);
        }
        self.folders.push(folder);
        Ok(true)
    }

    pub fn remove(&mut self, folder: &Path) -> bool {
        let canonical = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.into());
        let before = self.folders.len();
        self.folders.retain(|f| f != folder && *f != canonical);
        self.folders.len() != before
    }

    /// The saved folders plus those in `$PENTIMENTO_MODEL_DIRS` (a path list).
    pub fn all_folders(&self) -> Vec<PathBuf> {
        let mut all = self.folders.clone();
        if let Some(extra) = std::env::var_os("PENTIMENTO_MODEL_DIRS") {
            for f in std::env::split_paths(&extra) {
                if !f.as_os_str().is_empty() && !all.contains(&f) {
                    all.push(f);
                }
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_to_overwrite_a_damaged_file() {
        let dir = std::env::temp_dir().join(format!("pentimento-lib-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("models")).unwrap();
        let path = dir.join("cfg/library.json");
        let mut s = LibrarySettings::load(&path).unwrap();
        assert!(s.folders.is_empty());
        assert!(s.add(&dir.join("models")).unwrap());
        assert!(!s.add(&dir.join("models")).unwrap(), "added once");
        assert!(s.add(&dir.join("missing")).is_err());
        s.save(&path).unwrap();
        assert_eq!(LibrarySettings::load(&path).unwrap(), s);
        assert!(s.remove(&dir.join("models")));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            LibrarySettings::load(&path),
            Err(SettingsError::Parse { .. })
        ));
    }
}
