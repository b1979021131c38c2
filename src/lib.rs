pub mod bench;
pub mod document;
pub mod engine;
pub mod library;
pub mod png_info;
pub mod sweep;
pub mod ui;
