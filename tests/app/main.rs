//! The app's tests in one binary (it links once): the CLI end to end, the GUI through
//! egui_kittest, the model library and hub downloads against a fake hub on 127.0.0.1, and the
//! diffusers references run through the CLI.

mod common;

mod checkpoint_variants;
mod checkpoints;
mod cli;
mod docs;
mod extra_cases;
mod grid;
mod gui;
mod gui_control;
mod gui_layers;
mod gui_live;
mod gui_remote;
mod hostile;
mod hostile_controlnet;
mod hostile_server;
mod hub;
mod inpaint;
mod library;
mod png_params;
mod server;
