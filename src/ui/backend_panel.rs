//! Settings → Backend: compute on this computer or on a server (its address and key), and the
//! server's model. A view: it edits its text fields and returns what the user chose.

use eframe::egui;

use crate::remote::{ServerInfo, ServerKind};

/// The window's state: what is typed, and what the server said.
#[derive(Default)]
pub struct BackendPanel {
    pub open: bool,
    pub url: String,
    /// Kept in memory only, never written to the session file.
    pub key: String,
    /// The last connection's answer.
    pub server: Option<ServerInfo>,
    /// Why the last connection or model choice failed.
    pub problem: Option<String>,
}

pub enum BackendAction {
    None,
    UseLocal,
    UseServer { url: String, key: Option<String> },
    ChooseModel(String),
    Refresh,
}

/// What the window needs to know of the app.
pub struct BackendView<'a> {
    /// The server jobs go to now, if any.
    pub connected_to: Option<&'a str>,
    /// The server's model in use (or being loaded).
    pub model: Option<&'a str>,
}

impl BackendPanel {
    pub fn show(&mut self, ctx: &egui::Context, view: BackendView) -> BackendAction {
        let mut action = BackendAction::None;
        let mut open = self.open;
        egui::Window::new("Backend")
            .open(&mut open)
            .resizable(false)
            .default_width(380.0)
            .show(ctx, |ui| {
                action = self.contents(ui, &view);
            });
        self.open = open;
        action
    }

    fn contents(&mut self, ui: &mut egui::Ui, view: &BackendView) -> BackendAction {
        let mut action = BackendAction::None;
        ui.label("Where images are computed.");
        ui.add_space(4.0);
        if ui
            .radio(view.connected_to.is_none(), "This computer")
            .on_hover_text("the engine in this app, on the device chosen under Device")
            .clicked()
            && view.connected_to.is_some()
        {
            action = BackendAction::UseLocal;
        }
        ui.radio(view.connected_to.is_some(), "A server")
            .on_hover_text(
                "pentimento serve, AUTOMATIC1111 or Forge started with --api, on this network",
            );
        egui::Grid::new("server fields")
            .num_columns(2)
            .show(ui, |ui| {
                let label = ui.label("Address");
                ui.add(
                    egui::TextEdit::singleline(&mut self.url)
                        .hint_text("http://127.0.0.1:7860")
                        .desired_width(240.0),
                )
                .labelled_by(label.id)
                .on_hover_text("the server's address, as its start-up line prints it");
                ui.end_row();
                let label = ui.label("API key");
                ui.add(
                    egui::TextEdit::singleline(&mut self.key)
                        .password(true)
                        .hint_text("none")
                        .desired_width(240.0),
                )
                .labelled_by(label.id)
                .on_hover_text(
                    "pentimento serve's --api-key, or AUTOMATIC1111's --api-auth user:password",
                );
                ui.end_row();
            });
        let can_connect = !self.url.trim().is_empty();
        if ui
            .add_enabled(can_connect, egui::Button::new("Connect"))
            .on_disabled_hover_text("type the server's address first")
            .clicked()
        {
            let key = Some(self.key.trim().to_string()).filter(|k| !k.is_empty());
            action = BackendAction::UseServer {
                url: self.url.trim().to_string(),
                key,
            };
        }
        if let Some(problem) = &self.problem {
            ui.colored_label(ui.visuals().error_fg_color, problem);
        }
        let Some(url) = view.connected_to else {
            return action;
        };
        ui.separator();
        match self.server.as_ref().filter(|s| s.url == url) {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("connecting to {url}…"));
                });
            }
            Some(server) => {
                ui.label(format!(
                    "Connected to {} ({})",
                    server.url,
                    match server.kind {
                        ServerKind::Pentimento => "Pentimento",
                        ServerKind::Automatic1111 => "AUTOMATIC1111 API",
                    }
                ));
                let shown = view.model.unwrap_or("choose a model");
                ui.horizontal(|ui| {
                    let label = ui.label("Model");
                    egui::ComboBox::from_id_salt("server model")
                        .selected_text(shown)
                        .width(240.0)
                        .show_ui(ui, |ui| {
                            for title in &server.models {
                                if ui
                                    .selectable_label(view.model == Some(title.as_str()), title)
                                    .clicked()
                                {
                                    action = BackendAction::ChooseModel(title.clone());
                                }
                            }
                        })
                        .response
                        .labelled_by(label.id);
                    if ui
                        .button("Refresh")
                        .on_hover_text("ask the server for its models again")
                        .clicked()
                    {
                        action = BackendAction::Refresh;
                    }
                });
                if server.models.is_empty() {
                    ui.label("The server offers no models: give it some (serve --model-dir).");
                }
            }
        }
        action
    }
}
