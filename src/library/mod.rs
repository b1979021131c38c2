//! The models a user has: downloads from the Hugging Face hub and the library of checkpoints
//! found in the hub cache and in folders the user adds.

pub mod adapter_dirs;
pub mod app_dirs;
pub mod hub;
pub mod scan;
pub mod settings;
