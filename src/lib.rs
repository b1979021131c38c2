//! Pentimento, the app: the painting window (`ui`, over a `document`), the model library
//! (`library`: the hub cache, folders, downloads), the HTTP server (`server`: AUTOMATIC1111's
//! API) and benchmarks. The engine lives in its own
//! crate, `pentimento-engine`, re-exported here as `engine` (with its `png_info` and `sweep`).
//! The command line is in `main.rs` and `cli/`.

pub use pentimento_engine as engine;
pub use pentimento_engine::{png_info, sweep};

pub mod backend;
pub mod bench;
pub mod document;
pub mod library;
pub mod remote;
pub mod server;
pub mod ui;
