//! The active control layer's ControlNet settings: which network (those found in the
//! ControlNet folders, or any path), whether Generate uses it, its weight, the part of the steps
//! it acts in and its control mode. A view over the document: edits come back as commands.

use std::path::{Path, PathBuf};

use eframe::egui;

use super::commands::Command;
use crate::document::{Layer, LayerKind};
use crate::engine::control::{ControlMode, Preprocessor};

/// The ControlNets found, and the path box's text.
#[derive(Default)]
pub struct ControlPanel {
    found: Option<Vec<PathBuf>>,
    path_text: String,
    /// The layer the path box was typed for: another layer starts with an empty box.
    path_layer: Option<crate::document::LayerId>,
    /// The network chosen last: a new control layer starts with it.
    pub last_model: Option<PathBuf>,
    /// The preprocessor the next control layer is made with (`None`: by the layer's kind).
    pub new_from: Option<Preprocessor>,
    depth: Option<DepthJob>,
}

/// A depth map being made off the UI thread for a new control layer.
struct DepthJob {
    source: crate::document::LayerId,
    model: Option<PathBuf>,
    result: std::sync::mpsc::Receiver<Result<crate::engine::RgbImage, String>>,
}

/// A finished depth map, for the layer it was made from.
pub struct DepthDone {
    pub source: crate::document::LayerId,
    pub model: Option<PathBuf>,
    pub map: Result<crate::engine::RgbImage, String>,
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

impl ControlPanel {
    /// Starts the depth preprocessor on `picture` (Depth Anything V2, as `models pull`
    /// downloads it); returns what to tell the user.
    pub fn start_depth(
        &mut self,
        source: crate::document::LayerId,
        picture: crate::engine::RgbImage,
        model: Option<PathBuf>,
        hub_cache: &Path,
    ) -> String {
        use crate::engine::control::depth::{DepthEstimator, DEPTH_REPO};
        if self.depth.is_some() {
            return "a depth map is already being made".into();
        }
        let Some(dir) = crate::library::adapter_dirs::depth_model_in(None, hub_cache) else {
            return format!(
                "the depth preprocessor needs Depth Anything V2: run `pentimento models pull {DEPTH_REPO}`"
            );
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("depth-map".into())
            .spawn(move || {
                let map = DepthEstimator::load(&dir, &candle_core::Device::Cpu)
                    .and_then(|d| d.depth_map(&picture))
                    .map_err(|e| e.to_string());
                let _ = tx.send(map);
            });
        if let Err(e) = spawned {
            return format!("cannot start the depth map: {e}");
        }
        self.depth = Some(DepthJob {
            source,
            model,
            result: rx,
        });
        "making a depth map…".into()
    }

    pub fn depth_running(&self) -> bool {
        self.depth.is_some()
    }

    /// The depth map, once made.
    pub fn poll_depth(&mut self) -> Option<DepthDone> {
        let job = self.depth.as_ref()?;
        let map = match job.result.try_recv() {
            Ok(map) => map,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the depth map stopped unexpectedly".into())
            }
        };
        let job = self.depth.take()?;
        Some(DepthDone {
            source: job.source,
            model: job.model,
            map,
        })
    }

    /// The ControlNets in the ControlNet folders (scanned once; "Rescan" scans again).
    pub fn found(&mut self, library: Option<&Path>) -> &[PathBuf] {
        self.found.get_or_insert_with(|| {
            let dirs = crate::library::adapter_dirs::controlnet_dirs(&[], library);
            crate::library::adapter_dirs::controlnet_files(&dirs)
        })
    }

    /// The network a new control layer made with `module` starts with: the last one chosen,
    /// else a found one whose name says it suits the module (`scribble`, `canny`…).
    pub fn default_model(
        &mut self,
        module: Preprocessor,
        library: Option<&Path>,
    ) -> Option<PathBuf> {
        if let Some(m) = &self.last_model {
            return Some(m.clone());
        }
        let word = module.name();
        let found = self.found(library);
        found
            .iter()
            .find(|p| display_name(p).to_lowercase().contains(word))
            // The only ControlNet there is.
            .or(if found.len() == 1 {
                found.first()
            } else {
                None
            })
            .cloned()
    }

    /// Shows the settings of `layer` when it is a control layer.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        layer: &Layer,
        library: Option<&Path>,
        enabled: bool,
    ) -> Vec<Command> {
        let mut commands = vec![];
        let (LayerKind::Control, Some(current)) = (layer.kind, &layer.props.control) else {
            return commands;
        };
        let mut c = current.clone();
        if self.path_layer != Some(layer.id) {
            self.path_layer = Some(layer.id);
            self.path_text.clear();
        }
        ui.separator();
        ui.strong("ControlNet");
        ui.add_enabled_ui(enabled, |ui| {
            ui.checkbox(&mut c.enabled, "Use in generation")
                .on_hover_text("Hiding the layer only hides it from view");
            let chosen = c
                .model
                .as_deref()
                .map(display_name)
                .unwrap_or_else(|| "none chosen".into());
            let found = self.found(library).to_vec();
            ui.horizontal(|ui| {
                egui::ComboBox::from_label("ControlNet model")
                    .selected_text(chosen)
                    .width(120.0)
                    .show_ui(ui, |ui| {
                        if found.is_empty() {
                            ui.weak("no ControlNets in the ControlNet folders");
                        }
                        if ui.selectable_label(c.model.is_none(), "none").clicked() {
                            c.model = None;
                        }
                        for path in &found {
                            let on = c.model.as_deref() == Some(path.as_path());
                            if ui.selectable_label(on, display_name(path)).clicked() {
                                c.model = Some(path.clone());
                            }
                        }
                    });
                if ui
                    .small_button("Rescan")
                    .on_hover_text("Look in the ControlNet folders again")
                    .clicked()
                {
                    self.found = None;
                }
            });
            ui.horizontal(|ui| {
                let label = ui.label("Path");
                let edit = egui::TextEdit::singleline(&mut self.path_text)
                    .hint_text("a ControlNet file")
                    .desired_width(120.0);
                let response = ui.add(edit).labelled_by(label.id);
                let submitted =
                    response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Use path").clicked() || submitted {
                    let path = PathBuf::from(self.path_text.trim());
                    if path.exists() {
                        c.model = Some(path);
                        self.path_text.clear();
                    } else {
                        commands.push(Command::Status(format!(
                            "no ControlNet at {}",
                            path.display()
                        )));
                    }
                }
            });
            ui.add(egui::Slider::new(&mut c.weight, 0.0..=2.0).text("Weight"))
                .on_hover_text("How strongly the condition steers the picture");
            ui.add(egui::Slider::new(&mut c.start, 0.0..=1.0).text("Start"))
                .on_hover_text("The fraction of the steps after which it starts acting");
            ui.add(egui::Slider::new(&mut c.end, 0.0..=1.0).text("End"))
                .on_hover_text("The fraction of the steps after which it stops");
            let mut mode = c.mode();
            egui::ComboBox::from_label("Control mode")
                .selected_text(mode.a1111_name())
                .show_ui(ui, |ui| {
                    for m in ControlMode::ALL {
                        ui.selectable_value(&mut mode, m, m.a1111_name());
                    }
                });
            c.mode = mode.cli_name().into();
            ui.weak(format!("made with: {}", c.module().spec()));
        });
        if c.end <= c.start {
            // Sliders cannot cross: the one moved last pushes the other.
            if c.start != current.start {
                c.end = (c.start + 0.05).min(1.0);
                c.start = c.start.min(c.end - 0.05).max(0.0);
            } else {
                c.start = (c.end - 0.05).max(0.0);
                c.end = c.end.max(c.start + 0.05);
            }
        }
        if c != *current {
            if c.model != current.model {
                self.last_model = c.model.clone();
            }
            commands.push(Command::SetControl(layer.id, c));
        }
        commands
    }
}
