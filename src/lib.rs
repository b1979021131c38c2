pub mod engine;
pub mod png_info;
