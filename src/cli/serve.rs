//! `pentimento serve`: AUTOMATIC1111's API on this machine's engine (see `server`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pentimento::server::{ServeOptions, ServedModel};

use super::generate::args::DeviceArg;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on; another than 127.0.0.1 needs --api-key.
    #[arg(long, default_value = "127.0.0.1:7860")]
    pub listen: SocketAddr,
    /// The model to load at start (also offered by name).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Folders of models offered by name (`sd_model_checkpoint`); without any, the library's.
    #[arg(long = "model-dir")]
    pub model_dirs: Vec<PathBuf>,
    /// The key clients must send (`Authorization: Bearer KEY`, or basic auth with it as the
    /// password); also read from PENTIMENTO_API_KEY.
    #[arg(long, env = "PENTIMENTO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// LoRA folders for `<lora:NAME:W>` tags.
    #[arg(long = "lora-dir")]
    pub lora_dirs: Vec<PathBuf>,
    /// Textual-inversion embedding folders.
    #[arg(long = "embeddings-dir")]
    pub embedding_dirs: Vec<PathBuf>,
    /// Folders of ControlNets requests may name (`alwayson_scripts.controlnet`), beside the
    /// data folder's `controlnet` and `models/ControlNet` by the library's folders.
    #[arg(long = "controlnet-dir")]
    pub controlnet_dirs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    for dir in args
        .model_dirs
        .iter()
        .chain(&args.lora_dirs)
        .chain(&args.embedding_dirs)
        .chain(&args.controlnet_dirs)
    {
        if !dir.is_dir() {
            anyhow::bail!("{}: no such folder", dir.display());
        }
    }
    if let Some(m) = &args.model {
        if !m.exists() {
            anyhow::bail!("--model {}: no such file", m.display());
        }
    }
    let folders = if args.model_dirs.is_empty() {
        pentimento::library::settings::LibrarySettings::default_path()
            .and_then(|p| pentimento::library::settings::LibrarySettings::load(&p).ok())
            .map(|s| s.all_folders())
            .unwrap_or_default()
    } else {
        args.model_dirs.clone()
    };
    let library = pentimento::library::scan::scan(None, &folders);
    let mut models: Vec<ServedModel> = library
        .models
        .iter()
        .map(|m| ServedModel {
            name: pentimento::png_info::model_name(&m.path).unwrap_or_else(|| m.name.clone()),
            path: m.path.clone(),
            hash: m.hash.clone(),
        })
        .collect();
    if let Some(path) = &args.model {
        if !models.iter().any(|m| &m.path == path) {
            models.insert(
                0,
                ServedModel {
                    name: pentimento::png_info::model_name(path).unwrap_or_default(),
                    path: path.clone(),
                    hash: pentimento::engine::model::hash::known_model_hash(path),
                },
            );
        }
    }
    let load = pentimento::engine::model::LoadOptions {
        device: super::generate::plan::open_device(args.device)?,
        ..pentimento::engine::model::LoadOptions::cpu()
    };
    pentimento::server::serve(ServeOptions {
        listen: args.listen,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        models,
        model: args.model,
        load,
        lora_dirs: pentimento::library::adapter_dirs::lora_dirs(&args.lora_dirs, None),
        embedding_dirs: pentimento::library::adapter_dirs::embedding_dirs(
            &args.embedding_dirs,
            None,
        ),
        controlnet_dirs: pentimento::library::adapter_dirs::controlnet_dirs(
            &args.controlnet_dirs,
            None,
        ),
    })
    .context("serve")
}
