//! The LoRAs section under the prompt: the LoRAs the prompt names, each with a weight slider
//! that rewrites its `<lora:NAME:W>` tag in place (the prompt stays the one truth, as in
//! AUTOMATIC1111), and a browser of the LoRA folders' files — found by name, with the preview
//! picture beside each file and the trigger words its trainer recorded, added with one click —
//! and of the embeddings, whose names go into the prompt or the negative prompt. Files are
//! listed when the section first opens and on Rescan; a file's card is read when first shown.

use std::collections::HashMap;
use std::path::PathBuf;

use eframe::egui;

use crate::engine::model::adapters::card::{read_card, Card};
use crate::engine::model::adapters::find;
use crate::engine::prompt::extra_network_spans;

/// Most files listed at once (the filter narrows the rest).
const MAX_LISTED: usize = 200;
/// Cards read per frame, so that a folder of large files never stalls the window.
const CARDS_PER_FRAME: usize = 6;
/// Trigger words offered under a LoRA's name.
const WORDS_SHOWN: usize = 4;

#[derive(Default)]
pub struct LoraPanel {
    /// The LoRA files found (stem, path), once looked for.
    files: Option<Vec<(String, PathBuf)>>,
    /// The embedding files found (stem, path).
    embeddings: Vec<(String, PathBuf)>,
    folders: Vec<PathBuf>,
    filter: String,
    /// Cards read so far, with their preview textures once made.
    cards: HashMap<PathBuf, (Card, Option<egui::TextureHandle>)>,
}

impl LoraPanel {
    fn scan(&mut self, library: Option<&std::path::Path>) {
        self.folders = crate::library::adapter_dirs::lora_dirs(&[], library);
        let sorted = |mut files: Vec<(String, PathBuf)>| {
            files.sort_by_key(|a| a.0.to_lowercase());
            files.dedup_by(|a, b| a.0 == b.0);
            files
        };
        self.files = Some(sorted(find::lora_files(&self.folders)));
        let embedding_dirs = crate::library::adapter_dirs::embedding_dirs(&[], library);
        self.embeddings = sorted(crate::engine::model::adapters::embedding::embedding_files(
            &embedding_dirs,
        ));
        self.cards.clear();
    }

    /// The section; edits `prompt` (and `negative` for embeddings) where the user picks.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        prompt: &mut String,
        negative: &mut String,
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
                let files = self.files.take().unwrap_or_default();
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
                }
                let filter = self.filter.to_lowercase();
                let mut shown = 0;
                let mut budget = CARDS_PER_FRAME;
                egui::ScrollArea::vertical()
                    .id_salt("lora-files")
                    .max_height(220.0)
                    .show(ui, |ui| {
                        for (name, path) in &files {
                            if !name.to_lowercase().contains(&filter) {
                                continue;
                            }
                            if shown == MAX_LISTED {
                                ui.weak("… (type to narrow the list)");
                                break;
                            }
                            shown += 1;
                            let used = active.iter().any(|(n, _)| n == name);
                            self.file_row(ui, name, path, used, prompt, &mut budget);
                        }
                    });
                self.files = Some(files);
                if budget == 0 {
                    // Cards still to read: the next frame reads more.
                    ui.ctx().request_repaint();
                }
                self.embeddings_section(ui, prompt, negative, &filter);
            });
    }

    /// One LoRA file: its preview, "+ name" (adds the tag), and its first trigger words (each
    /// adds the word).
    fn file_row(
        &mut self,
        ui: &mut egui::Ui,
        name: &str,
        path: &std::path::Path,
        used: bool,
        prompt: &mut String,
        budget: &mut usize,
    ) {
        if !self.cards.contains_key(path) && *budget > 0 {
            *budget -= 1;
            self.cards
                .insert(path.to_path_buf(), (read_card(path), None));
        }
        let entry = self.cards.get_mut(path);
        ui.horizontal(|ui| {
            if let Some((card, texture)) = entry {
                if let Some(thumb) = &card.thumbnail {
                    let texture = texture.get_or_insert_with(|| {
                        let img = egui::ColorImage::from_rgb(
                            [thumb.width, thumb.height],
                            &thumb.pixels,
                        );
                        ui.ctx().load_texture(
                            format!("lora-preview-{}", path.display()),
                            img,
                            egui::TextureOptions::LINEAR,
                        )
                    });
                    let scale = 40.0 / thumb.width.max(thumb.height).max(1) as f32;
                    let size = egui::vec2(thumb.width as f32, thumb.height as f32) * scale;
                    ui.add(egui::Image::new((texture.id(), size)));
                }
                ui.vertical(|ui| {
                    let mut hover = path.display().to_string();
                    if let Some(n) = &card.output_name {
                        hover.push_str(&format!("\ntrained as {n}"));
                    }
                    if let Some(m) = &card.base_model {
                        hover.push_str(&format!("\non {m}"));
                    }
                    let button = ui
                        .add_enabled(!used, egui::Button::new(format!("+ {name}")))
                        .on_hover_text(hover);
                    if button.clicked() {
                        add(prompt, name);
                    }
                    if !card.trigger_words.is_empty() {
                        ui.horizontal_wrapped(|ui| {
                            for (word, count) in card.trigger_words.iter().take(WORDS_SHOWN) {
                                let b = ui.small_button(word).on_hover_text(format!(
                                    "a trigger word of {name} ({count} training captions): add it to the prompt"
                                ));
                                if b.clicked() {
                                    add_word(prompt, word);
                                }
                            }
                        });
                    }
                });
            } else {
                let button = ui.add_enabled(!used, egui::Button::new(format!("+ {name}")));
                if button.on_hover_text(path.display().to_string()).clicked() {
                    add(prompt, name);
                }
            }
        });
    }

    /// The embeddings found: each name goes into the prompt, or with "−" into the negative
    /// prompt (where AUTOMATIC1111 users put EasyNegative and the like).
    fn embeddings_section(
        &mut self,
        ui: &mut egui::Ui,
        prompt: &mut String,
        negative: &mut String,
        filter: &str,
    ) {
        let title = format!("Embeddings ({})", self.embeddings.len());
        egui::CollapsingHeader::new(title)
            .id_salt("embeddings")
            .show(ui, |ui| {
                if self.embeddings.is_empty() {
                    ui.weak(
                        "No embeddings found. Put .pt/.safetensors embeddings in the data folder's embeddings/, or add a model folder whose models/embeddings (or the web UI's embeddings/) holds them.",
                    );
                    return;
                }
                egui::ScrollArea::vertical()
                    .id_salt("embedding-files")
                    .max_height(140.0)
                    .show(ui, |ui| {
                        let matching = self
                            .embeddings
                            .iter()
                            .filter(|(n, _)| n.to_lowercase().contains(filter));
                        for (name, path) in matching.take(MAX_LISTED) {
                            ui.horizontal(|ui| {
                                let hover = path.display().to_string();
                                if ui
                                    .button(format!("+ {name}"))
                                    .on_hover_text(format!("{hover}\nadd to the prompt"))
                                    .clicked()
                                {
                                    add_word(prompt, name);
                                }
                                if ui
                                    .small_button("−")
                                    .on_hover_text(format!(
                                        "add {name} to the negative prompt"
                                    ))
                                    .clicked()
                                {
                                    add_word(negative, name);
                                }
                            });
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

/// Appends `word` as a comma-separated term, unless the prompt holds it already.
fn add_word(prompt: &mut String, word: &str) {
    let present = prompt
        .split(|c: char| c == ',' || c.is_whitespace())
        .any(|w| w == word);
    if present {
        return;
    }
    let trimmed = prompt.trim_end().len();
    prompt.truncate(trimmed);
    if !prompt.is_empty() {
        prompt.push_str(", ");
    }
    prompt.push_str(word);
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
        add_word(&mut p, "inkstyle");
        assert_eq!(p, "a heron, reeds <lora:watercolor:1>, inkstyle");
        add_word(&mut p, "heron");
        assert_eq!(p, "a heron, reeds <lora:watercolor:1>, inkstyle");
        let mut empty = String::new();
        add_word(&mut empty, "EasyNegative");
        assert_eq!(empty, "EasyNegative");
    }
}
