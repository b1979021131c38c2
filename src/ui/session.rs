//! What the prompt panel held when the app last generated or closed, restored at the next
//! start: prompt, negative prompt, sampler, steps, size, seed (and whether it was locked),
//! batch settings. Written atomically; a damaged or oversized file is ignored, never fatal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::prompt_panel::PromptPanel;
use crate::engine::params::GenerationParams;

/// Far more than any panel's settings (prompts are bounded by the engine's own limit).
pub const MAX_SESSION_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanelSettings {
    pub params: GenerationParams,
    pub seed_locked: bool,
    pub batch_count: usize,
    pub batch_size: usize,
    /// The server jobs went to (its key is not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl PanelSettings {
    pub fn of(panel: &PromptPanel) -> Self {
        Self {
            params: panel.params.clone(),
            seed_locked: panel.seed_locked,
            batch_count: panel.batch_count,
            batch_size: panel.batch_size,
            server: None,
        }
    }

    pub fn with_server(self, server: Option<String>) -> Self {
        Self { server, ..self }
    }

    /// Puts the settings into `panel`, keeping its defaults where a value would not be valid.
    pub fn apply(self, panel: &mut PromptPanel) {
        if self.params.validate().is_ok() {
            panel.params = self.params;
        }
        panel.seed_locked = self.seed_locked;
        panel.batch_count = self.batch_count.clamp(1, 8);
        panel.batch_size = self.batch_size.clamp(1, 8);
    }

    /// The settings saved at `path`, if any were and they read back.
    pub fn load(path: &Path) -> Option<Self> {
        let text = crate::engine::regular_file::read_to_string(path, MAX_SESSION_BYTES).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::engine::atomic_file::write(path, text.as_bytes())
    }
}

/// `session.json` in the config folder.
pub fn default_path() -> Option<PathBuf> {
    Some(crate::library::app_dirs::config_dir()?.join("session.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_damage() {
        let dir = std::env::temp_dir().join(format!("pentimento-session-{}", std::process::id()));
        let path = dir.join("session.json");
        let mut panel = PromptPanel::default();
        panel.params.prompt = "a lighthouse".into();
        panel.params.steps = 33;
        panel.seed_locked = true;
        PanelSettings::of(&panel).save(&path).unwrap();
        let mut restored = PromptPanel::default();
        PanelSettings::load(&path).unwrap().apply(&mut restored);
        assert_eq!(restored.params, panel.params);
        assert!(restored.seed_locked);

        std::fs::write(&path, "{ not json").unwrap();
        assert!(PanelSettings::load(&path).is_none());
        // Values a hand-edited file may hold are not taken.
        let mut bad = PanelSettings::of(&panel);
        bad.params.steps = 0;
        bad.batch_count = 10_000;
        let mut kept = PromptPanel::default();
        bad.apply(&mut kept);
        assert_eq!(kept.params.steps, 20);
        assert_eq!(kept.batch_count, 8);
        let _ = std::fs::remove_dir_all(dir);
    }
}
