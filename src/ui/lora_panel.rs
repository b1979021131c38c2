//! The LoRAs section under the prompt: the LoRAs the prompt names, each with a weight slider
//! that rewrites its `<lora:NAME:W>` tag in place (the prompt stays the one truth, as in
//! AUTOMATIC1111), and the LoRA files of the LoRA folders, filtered by name, added with one
//! click. The files are listed when the section first opens and on Rescan.

use std::path::PathBuf;

use eframe::egui;

use crate::engine::model::adapters::find;
use crate::engine::prompt::extra_network_spans;

/// Most files listed at once (the filter narrows the rest).
const MAX_LISTED: usize = 200;

#[derive(Default)]
pub struct LoraPanel {
    /// The LoRA files found (stem, path), once looked for.
    files: Option<Vec<(String, PathBuf)>>,
    folders: Vec<PathBuf>,
    filter: String,
}

impl LoraPanel {
    fn scan(&mut self, library: Option<&std::path::Path>) {
        self.folders = crate::library::adapter_dirs::lora_dirs(&[], library);
        let mut files = find::lora_files(&self.folders);
        files.sort_by_key(|a| a.0.to_lowercase());
        files.dedup_by(|a, b| a.0 == b.0);
        self.files = Some(files);
    }

    /// The section; edits `prompt` where the user changes a LoRA.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        prompt: &mut String,
        library: Option<&std::path::Path>,
    ) {
        let active = active_loras(prompt);
        let title = match active.len() {
            0 => "LoRAs".to_string(),
            n => format!("LoRAs ({n} in the prompt)"),
        };
        egui::CollapsingHeader::new(title)
            .id_salt("loras")
            .show(ui, |ui| {
                if self.files.is_none() {
                    self.scan(library);
                }
                for (i, (name, weight)) in active.iter().enumerate() {
                    ui.horizontal(|ui| {
                        let mut w = *weight;
                        ui.label(name);
                        let slider = egui::Slider::new(&mut w, -2.0..=2.0)
                            .fixed_decimals(2)
                            .clamping(egui::SliderClamping::Never);
                        if ui.add(slider).on_hover_text(format!("weight of {name}")).changed() {
                            set_weight(prompt, i, w);
                        }
                        if ui
                            .small_button("Remove")
                            .on_hover_text(format!("take <lora:{name}:…> out of the prompt"))
                            .clicked()
                        {
                            remove(prompt, i);
                        }
                    });
                }
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.filter)
                            .hint_text("find a LoRA")
                            .desired_width(160.0),
                    );
                    if ui.small_button("Rescan").clicked() {
                        self.scan(library);
                    }
                });
                let files = self.files.as_deref().unwrap_or_default();
                if files.is_empty() {
                    let places = if self.folders.is_empty() {
                        "no LoRA folder yet".to_string()
                    } else {
                        self.folders
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    ui.weak(format!(
                        "No LoRA files found ({places}). Put them in the data folder's loras/, or add a model folder whose models/Lora holds them."
                    ));
                    return;
                }
                let filter = self.filter.to_lowercase();
                let mut shown = 0;
                egui::ScrollArea::vertical()
                    .id_salt("lora-files")
                    .max_height(160.0)
                    .show(ui, |ui| {
                        for (name, path) in files {
                            if !name.to_lowercase().contains(&filter) {
                                continue;
                            }
                            if shown == MAX_LISTED {
                                ui.weak("… (type to narrow the list)");
                                break;
                            }
                            shown += 1;
                            let used = active.iter().any(|(n, _)| n == name);
                            let button = ui
                                .add_enabled(!used, egui::Button::new(format!("+ {name}")))
                                .on_hover_text(path.display().to_string());
                            if button.clicked() {
                                add(prompt, name);
                            }
                        }
                    });
            });
    }
}

/// The LoRAs a prompt names, in order, with their weights (1 when not given or not a number).
pub fn active_loras(prompt: &str) -> Vec<(String, f32)> {
    extra_network_spans(prompt)
        .into_iter()
        .filter(|(_, n)| matches!(n.kind.as_str(), "lora" | "lyco"))
        .map(|(_, n)| {
            let weight = n.args.get(1).and_then(|w| w.parse().ok()).unwrap_or(1.0);
            (n.args.first().cloned().unwrap_or_default(), weight)
        })
        .collect()
}

/// The `i`-th LoRA tag's byte range and its network.
fn nth(
    prompt: &str,
    i: usize,
) -> Option<(std::ops::Range<usize>, crate::engine::prompt::PromptNetwork)> {
    extra_network_spans(prompt)
        .into_iter()
        .filter(|(_, n)| matches!(n.kind.as_str(), "lora" | "lyco"))
        .nth(i)
}

/// Rewrites the `i`-th LoRA tag with `weight`, keeping its kind and name.
pub fn set_weight(prompt: &mut String, i: usize, weight: f32) {
    if let Some((range, n)) = nth(prompt, i) {
        let name = n.args.first().cloned().unwrap_or_default();
        let tag = format!("<{}:{name}:{}>", n.kind, (weight * 100.0).round() / 100.0);
        prompt.replace_range(range, &tag);
    }
}

fn remove(prompt: &mut String, i: usize) {
    if let Some((range, _)) = nth(prompt, i) {
        prompt.replace_range(range.clone(), "");
        // No space left dangling where the tag was: before a space, a comma or the end.
        let at = range.start;
        let next = prompt[at..].chars().next();
        if prompt[..at].ends_with(' ') && matches!(next, None | Some(' ' | ',')) {
            prompt.remove(at - 1);
        }
        *prompt = prompt.trim_end().to_string();
    }
}

fn add(prompt: &mut String, name: &str) {
    if !prompt.is_empty() && !prompt.ends_with(' ') {
        prompt.push(' ');
    }
    prompt.push_str(&format!("<lora:{name}:1>"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_edited_in_place() {
        let mut p = String::from("a heron <lora:ink:0.8>, reeds <lyco:glow>");
        assert_eq!(
            active_loras(&p),
            [("ink".into(), 0.8), ("glow".into(), 1.0)]
        );
        set_weight(&mut p, 0, -0.25);
        assert_eq!(p, "a heron <lora:ink:-0.25>, reeds <lyco:glow>");
        set_weight(&mut p, 1, 1.5);
        assert_eq!(p, "a heron <lora:ink:-0.25>, reeds <lyco:glow:1.5>");
        remove(&mut p, 1);
        assert_eq!(p, "a heron <lora:ink:-0.25>, reeds");
        add(&mut p, "watercolor");
        assert_eq!(p, "a heron <lora:ink:-0.25>, reeds <lora:watercolor:1>");
        remove(&mut p, 0);
        assert_eq!(p, "a heron, reeds <lora:watercolor:1>");
    }
}
