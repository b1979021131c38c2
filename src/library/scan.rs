//! Finding models: diffusers pipelines in the hub cache, single-file checkpoints and diffusers
//! folders in the user's folders. Each is described from its header or configs only (type,
//! size, the hash when it is already known); nothing is loaded.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::model::hash;
use crate::engine::model::inspect::{inspect, Inspection};

/// How deep to look below a model folder (A1111 users sort checkpoints into subfolders).
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    Hub { repo: String },
    Folder { folder: PathBuf },
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// What a user calls it: the repository id or the file's name.
    pub name: String,
    pub path: PathBuf,
    pub source: Source,
    /// "diffusers folder", "safetensors", "ckpt".
    pub container: String,
    /// "SD 1.x" or "SD 2.x".
    pub family: Option<String>,
    pub inpainting: bool,
    /// "epsilon" or "v", with how it is known.
    pub prediction: Option<String>,
    pub bytes: u64,
    /// AUTOMATIC1111's model hash, when known without reading the whole file.
    pub hash: Option<String>,
}

impl ModelEntry {
    fn from_inspection(name: String, source: Source, i: Inspection) -> Self {
        let hash = if i.container == "diffusers folder" {
            None
        } else {
            hash::known_model_hash(&i.path)
        };
        Self {
            name,
            path: i.path,
            source,
            container: i.container,
            family: i.family,
            inpainting: i.inpainting.unwrap_or(false),
            prediction: i.prediction,
            bytes: i.bytes,
            hash,
        }
    }

    /// "SD 1.x inpainting, v-prediction".
    pub fn kind(&self) -> String {
        let mut s = self.family.clone().unwrap_or_else(|| "SD".into());
        if self.inpainting {
            s.push_str(" inpainting");
        }
        if self
            .prediction
            .as_deref()
            .is_some_and(|p| p.starts_with('v'))
        {
            s.push_str(", v-prediction");
        }
        s
    }
}

/// A file or folder that looked like a model but could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Library {
    pub models: Vec<ModelEntry>,
    pub problems: Vec<Problem>,
}

/// Everything in the hub cache `hub` (when given) and in `folders`.
pub fn scan(hub: Option<&Path>, folders: &[PathBuf]) -> Library {
    let mut lib = Library::default();
    if let Some(hub) = hub {
        scan_hub(hub, &mut lib);
    }
    for folder in folders {
        if !folder.is_dir() {
            lib.problems.push(Problem {
                path: folder.clone(),
                message: "model folder not found".into(),
            });
            continue;
        }
        scan_folder(folder, folder, 0, &mut lib, &mut Default::default());
    }
    lib
}

/// `models--owner--name/snapshots/<commit>` for the commit `refs/main` names (else the newest).
fn scan_hub(hub: &Path, lib: &mut Library) {
    let Ok(entries) = std::fs::read_dir(hub) else {
        return;
    };
    let mut repos: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(repo) = repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("models--"))
            .map(|n| n.replacen("--", "/", 1))
        else {
            continue;
        };
        let Some(snapshot) = snapshot(&repo_dir) else {
            continue;
        };
        let source = Source::Hub { repo: repo.clone() };
        if snapshot.join("model_index.json").exists() {
            match inspect(&snapshot) {
                Ok(i) if i.kind == "Stable Diffusion checkpoint" => lib
                    .models
                    .push(ModelEntry::from_inspection(repo, source, i)),
                Ok(_) => {}
                Err(e) => lib.problems.push(Problem {
                    path: snapshot,
                    message: e.to_string(),
                }),
            }
        } else {
            // A repository of single-file checkpoints.
            let mut files = checkpoint_files(&snapshot);
            files.sort();
            for f in files {
                let name = format!(
                    "{repo}/{}",
                    f.strip_prefix(&snapshot).unwrap_or(&f).display()
                );
                add_file(&f, name, source.clone(), lib);
            }
        }
    }
}

fn snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(commit) =
        pentimento_engine::regular_file::read_to_string(&repo_dir.join("refs/main"), 1024)
    {
        // A commit id, never a path: a ref holding `../..` is ignored.
        let commit = commit.trim();
        let s = snapshots.join(commit);
        if super::hub::is_commit(commit) && s.is_dir() {
            return Some(s);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// `seen` holds the real paths already listed: a folder linked into itself (`ln -s . loop`) or
/// a file reached by two links is listed once.
fn scan_folder(
    root: &Path,
    dir: &Path,
    depth: usize,
    lib: &mut Library,
    seen: &mut std::collections::HashSet<PathBuf>,
) {
    let source = Source::Folder {
        folder: root.to_path_buf(),
    };
    if !std::fs::canonicalize(dir).is_ok_and(|real| seen.insert(real)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        lib.problems.push(Problem {
            path: dir.into(),
            message: "cannot read this folder".into(),
        });
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        let name = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        if p.is_file() && !std::fs::canonicalize(&p).is_ok_and(|real| seen.insert(real)) {
            continue;
        }
        if p.is_dir() {
            if p.join("model_index.json").exists() || p.join("unet/config.json").exists() {
                match inspect(&p) {
                    Ok(i) if i.kind == "Stable Diffusion checkpoint" => lib
                        .models
                        .push(ModelEntry::from_inspection(name, source.clone(), i)),
                    Ok(_) => {}
                    Err(e) => lib.problems.push(Problem {
                        path: p,
                        message: e.to_string(),
                    }),
                }
            } else if depth < MAX_DEPTH {
                scan_folder(root, &p, depth + 1, lib, seen);
            }
        } else if is_checkpoint_name(&p) {
            add_file(&p, name, source.clone(), lib);
        }
    }
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| is_checkpoint_name(p))
                .collect()
        })
        .unwrap_or_default()
}

/// `.safetensors` / `.ckpt`, but not the `NAME.vae.*` files that sit beside checkpoints.
fn is_checkpoint_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    (name.ends_with(".safetensors") || name.ends_with(".ckpt")) && !name.contains(".vae.")
}

/// Adds a single file when it is a checkpoint; LoRAs, VAEs and the like are left out quietly,
/// unreadable files are reported.
fn add_file(p: &Path, name: String, source: Source, lib: &mut Library) {
    match inspect(p) {
        Ok(i) if i.kind == "Stable Diffusion checkpoint" => lib
            .models
            .push(ModelEntry::from_inspection(name, source, i)),
        Ok(_) => {}
        Err(e) => lib.problems.push(Problem {
            path: p.into(),
            message: e.to_string(),
        }),
    }
}
