//! Downloads from the Hugging Face hub into its own cache layout (`models--owner--name/…`), so
//! files are shared with diffusers, ComfyUI and every other tool that uses the hub cache. Only
//! the files a Stable Diffusion pipeline needs are fetched, fp16 weights where the repository
//! offers them. Interrupted downloads resume from the partial file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};

/// Checkpoints known to work, by short name.
pub const KNOWN: [(&str, &str, &str); 5] = [
    (
        "sd15",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "Stable Diffusion 1.5",
    ),
    (
        "sd15-inpainting",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "Stable Diffusion 1.5 inpainting",
    ),
    (
        "sd21",
        "stabilityai/stable-diffusion-2-1",
        "Stable Diffusion 2.1 (768, v-prediction)",
    ),
    (
        "sd2-inpainting",
        "stabilityai/stable-diffusion-2-inpainting",
        "Stable Diffusion 2 inpainting (512)",
    ),
    (
        "taesd",
        "madebyollin/taesd",
        "TAESD: tiny VAE for live previews",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0:?} is not a repository id: use owner/name (or one of: {1})")]
    BadRepo(String, String),
    #[error("offline (HF_HUB_OFFLINE is set): cannot download {0}")]
    Offline(String),
    #[error("cannot reach {endpoint}: {reason} (offline? files already downloaded still work)")]
    Unreachable { endpoint: String, reason: String },
    #[error("{what} was not found on {endpoint} (HTTP {status}){hint}")]
    NotFound {
        what: String,
        endpoint: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{what}: the hub answered HTTP {status}")]
    Http { what: String, status: u16 },
    #[error("{0} has neither a diffusers pipeline (model_index.json) nor a model component to download; name a file with --file")]
    NothingToFetch(String),
    #[error("{what}: {reason}")]
    Other { what: String, reason: String },
}

/// Where the hub cache lives: `$HF_HUB_CACHE`, `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        return PathBuf::from(d).join("hub");
    }
    Cache::from_env().path().clone()
}

/// The hub's address: `$HF_ENDPOINT`, else huggingface.co.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into())
}

/// What a pull reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The files to fetch, decided from the repository's listing.
    Planned {
        files: Vec<String>,
    },
    /// Already in the cache: not downloaded again.
    Cached {
        file: String,
    },
    /// Bytes of `file` so far (a resumed download starts at what was already there).
    Progress {
        file: String,
        done: u64,
        total: u64,
        bytes_per_second: f64,
    },
    Downloaded {
        file: String,
    },
}

pub struct Hub {
    api: Api,
    cache: Cache,
    endpoint: String,
}

impl Hub {
    /// The hub at `endpoint` (default: [`endpoint()`]) with its cache in `cache` (default:
    /// [`cache_dir()`]); a token from `$HF_TOKEN` or the cache's token file, for gated models.
    pub fn new(
        endpoint_override: Option<String>,
        cache: Option<PathBuf>,
    ) -> Result<Self, HubError> {
        let endpoint = endpoint_override.unwrap_or_else(endpoint);
        let cache_path = cache.unwrap_or_else(cache_dir);
        let cache = Cache::new(cache_path.clone());
        let token = std::env::var("HF_TOKEN").ok().or_else(|| cache.token());
        let api = ApiBuilder::new()
            .with_endpoint(endpoint.clone())
            .with_cache_dir(cache_path)
            .with_token(token)
            .with_progress(false)
            .with_retries(0)
            .build()
            .map_err(|e| HubError::Other {
                what: "hub client".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            api,
            cache,
            endpoint,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Downloads what a model needs from `repo` (an id `owner/name` or a short name from
    /// [`KNOWN`]), or just `files` when given. Returns the local folder (the snapshot), which
    /// loads like any diffusers folder, or the single file when one file was asked for.
    pub fn pull(
        &self,
        repo: &str,
        revision: Option<&str>,
        files: &[String],
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, HubError> {
        let id = resolve_repo(repo)?;
        if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| v != "0" && !v.is_empty()) {
            return Err(HubError::Offline(id));
        }
        let repo = Repo::with_revision(
            id.clone(),
            RepoType::Model,
            revision.unwrap_or("main").to_string(),
        );
        let api = self.api.repo(repo.clone());
        let wanted = if files.is_empty() {
            let info = api
                .info()
                .map_err(|e| self.explain(e, &format!("repository {id}")))?;
            let listing: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
            plan(&listing).ok_or_else(|| HubError::NothingToFetch(id.clone()))?
        } else {
            files.to_vec()
        };
        on_event(PullEvent::Planned {
            files: wanted.clone(),
        });
        let cached = self.cache.repo(repo);
        let mut last = None;
        for file in &wanted {
            let path = match cached.get(file) {
                Some(p) => {
                    on_event(PullEvent::Cached { file: file.clone() });
                    p
                }
                None => {
                    let progress = Reporter::new(file, on_event);
                    let p = api
                        .download_with_progress(file, progress)
                        .map_err(|e| self.explain(e, &format!("{id}/{file}")))?;
                    on_event(PullEvent::Downloaded { file: file.clone() });
                    p
                }
            };
            last = Some((file.clone(), path));
        }
        let (file, path) = last.ok_or_else(|| HubError::NothingToFetch(id.clone()))?;
        if wanted.len() == 1 && !file.ends_with(".json") {
            return Ok(path);
        }
        // The snapshot folder: strip the file's own path from its local path.
        let depth = Path::new(&file).components().count();
        Ok(path
            .ancestors()
            .nth(depth)
            .map(Path::to_path_buf)
            .unwrap_or(path))
    }

    fn explain(&self, e: ApiError, what: &str) -> HubError {
        let endpoint = self.endpoint.clone();
        match e {
            ApiError::RequestError(boxed) => match *boxed {
                ureq::Error::Status(status @ (401 | 403 | 404), _) => HubError::NotFound {
                    what: what.into(),
                    endpoint,
                    status,
                    hint: if status == 404 {
                        ""
                    } else {
                        " (a gated or private repository needs a token: set HF_TOKEN)"
                    },
                },
                ureq::Error::Status(status, _) => HubError::Http {
                    what: what.into(),
                    status,
                },
                ureq::Error::Transport(t) => HubError::Unreachable {
                    endpoint,
                    reason: t.to_string(),
                },
            },
            ApiError::IoError(io) => HubError::Unreachable {
                endpoint,
                reason: format!(
                    "the download broke off ({io}); run the same command again to resume"
                ),
            },
            ApiError::TooManyRetries(inner) => self.explain(*inner, what),
            other => HubError::Other {
                what: what.into(),
                reason: other.to_string(),
            },
        }
    }
}

/// A short name from [`KNOWN`] or an `owner/name` id.
pub fn resolve_repo(repo: &str) -> Result<String, HubError> {
    if let Some((_, id, _)) = KNOWN.iter().find(|(short, _, _)| *short == repo) {
        return Ok(id.to_string());
    }
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok(repo.to_string()),
        _ => Err(HubError::BadRepo(
            repo.into(),
            KNOWN.iter().map(|k| k.0).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// The files a model needs from a repository listing: a diffusers pipeline's configs, tokenizer
/// and the weights of its UNet, VAE and text encoder (safetensors, fp16 where offered; `.bin`
/// only where no safetensors exist), or a lone component (a VAE, TAESD) at the top level.
pub fn plan(listing: &[String]) -> Option<Vec<String>> {
    let has = |f: &str| listing.iter().any(|l| l == f);
    let (components, mut files): (Vec<&str>, Vec<String>) = if has("model_index.json") {
        (
            vec!["unet", "vae", "text_encoder"],
            ["model_index.json", "scheduler/scheduler_config.json"]
                .iter()
                .filter(|f| has(f))
                .map(|f| f.to_string())
                .chain(
                    listing
                        .iter()
                        .filter(|f| f.starts_with("tokenizer/"))
                        .cloned(),
                )
                .collect(),
        )
    } else if has("config.json") {
        (vec![""], vec![])
    } else {
        return None;
    };
    for component in components {
        let prefix = if component.is_empty() {
            String::new()
        } else {
            format!("{component}/")
        };
        let config = format!("{prefix}config.json");
        if !has(&config) {
            continue;
        }
        files.push(config);
        let weights: Vec<&String> = listing
            .iter()
            .filter(|f| {
                f.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| !rest.contains('/') && is_weights(rest))
            })
            .collect();
        // Sharded checkpoints (`.index.json`) are not what SD components ship as.
        let best = weights
            .iter()
            .min_by_key(|f| (!f.ends_with(".safetensors"), !f.contains(".fp16."), f.len()));
        if let Some(best) = best {
            files.push((*best).clone());
        }
    }
    if files.iter().any(|f| is_weights(f)) {
        Some(files)
    } else {
        None
    }
}

fn is_weights(name: &str) -> bool {
    (name.ends_with(".safetensors") || name.ends_with(".bin")) && !name.contains(".index.")
}

/// Turns hf-hub's byte counts into [`PullEvent::Progress`], at most ten a second.
struct Reporter<'a> {
    file: String,
    on_event: &'a mut dyn FnMut(PullEvent),
    done: u64,
    total: u64,
    resumed_from: u64,
    /// The next update is the byte count a resumed download starts from.
    first_update: bool,
    started: Instant,
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(file: &str, on_event: &'a mut dyn FnMut(PullEvent)) -> Self {
        Self {
            file: file.into(),
            on_event,
            done: 0,
            total: 0,
            resumed_from: 0,
            first_update: true,
            started: Instant::now(),
            last: None,
        }
    }

    fn report(&mut self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        (self.on_event)(PullEvent::Progress {
            file: self.file.clone(),
            done: self.done,
            total: self.total,
            bytes_per_second: (self.done - self.resumed_from) as f64 / secs,
        });
        self.last = Some(Instant::now());
    }
}

impl Progress for Reporter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.started = Instant::now();
        self.resumed_from = 0;
        self.first_update = true;
        self.last = None;
    }

    fn update(&mut self, size: usize) {
        // hf-hub reports a resumed download's existing bytes as the first update.
        if std::mem::take(&mut self.first_update) {
            self.resumed_from = size as u64;
        }
        self.done += size as u64;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due {
            self.report();
        }
    }

    fn finish(&mut self) {
        self.report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[&str]) -> Vec<String> {
        files.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plans_a_pipeline_with_fp16_safetensors() {
        let l = listing(&[
            "model_index.json",
            "scheduler/scheduler_config.json",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "unet/config.json",
            "unet/diffusion_pytorch_model.bin",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.non_ema.bin",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/config.json",
            "text_encoder/pytorch_model.bin",
            "safety_checker/config.json",
            "safety_checker/model.safetensors",
            "v1-5-pruned.ckpt",
            "README.md",
        ]);
        let p = plan(&l).unwrap();
        assert!(p.contains(&"unet/diffusion_pytorch_model.fp16.safetensors".to_string()));
        assert!(p.contains(&"vae/diffusion_pytorch_model.safetensors".to_string()));
        assert!(p.contains(&"text_encoder/pytorch_model.bin".to_string()));
        assert!(p.contains(&"tokenizer/merges.txt".to_string()));
        assert!(!p
            .iter()
            .any(|f| f.contains("safety_checker") || f.ends_with(".ckpt")));
        assert_eq!(p.iter().filter(|f| f.starts_with("unet/")).count(), 2);
    }

    #[test]
    fn plans_a_lone_component_and_refuses_nothing() {
        let p = plan(&listing(&[
            "config.json",
            "diffusion_pytorch_model.safetensors",
            "taesd_decoder.pth",
        ]))
        .unwrap();
        assert_eq!(p, ["config.json", "diffusion_pytorch_model.safetensors"]);
        assert!(plan(&listing(&["README.md", "model.ckpt"])).is_none());
    }

    #[test]
    fn short_names_and_ids() {
        assert_eq!(resolve_repo("sd15").unwrap(), KNOWN[0].1);
        assert_eq!(resolve_repo("a/b.c-d").unwrap(), "a/b.c-d");
        assert!(resolve_repo("nope").is_err());
        assert!(resolve_repo("a/b/c").is_err());
    }
}
