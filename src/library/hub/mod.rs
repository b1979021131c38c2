//! Downloads from the Hugging Face hub into its own cache layout (`models--owner--name/…`), so
//! files are shared with diffusers, ComfyUI and every other tool that uses the hub cache. Only
//! the files a Stable Diffusion pipeline needs are fetched, fp16 weights where the repository
//! offers them. Interrupted downloads resume from the partial file; every name a server sends
//! is checked before it becomes a path (`cache`), every byte count and hash before a file is
//! kept (`http`).

mod cache;
mod http;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use cache::{is_commit, MAX_NAME_BYTES, MAX_NAME_PARTS};
use cache::{safe_relative, RepoCache};
use http::Http;
pub use http::{Timeouts, MAX_FILE_BYTES, MAX_REDIRECTS};

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
    /// The server sent something that cannot be trusted: a header that would be a path, a
    /// body longer than declared, bytes that fail their checksum.
    #[error("{what}: refused, the hub sent {reason}")]
    Refused { what: String, reason: String },
    #[error("{what}: {reason}")]
    Other { what: String, reason: String },
}

/// Where the hub cache lives: `$HF_HUB_CACHE`, `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
/// The `main` snapshot of `repo` in the hub cache, when it was downloaded.
pub fn cached_snapshot(repo: &str) -> Option<PathBuf> {
    cached_snapshot_in(&cache_dir(), repo)
}

/// `cached_snapshot` in the hub cache at `cache`.
pub fn cached_snapshot_in(cache: &Path, repo: &str) -> Option<PathBuf> {
    let cache = cache::RepoCache::new(cache, repo);
    let commit = cache.commit_for("main")?;
    Some(cache.snapshot_dir(&commit)).filter(|d| d.is_dir())
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        return PathBuf::from(d).join("hub");
    }
    dirs::home_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/huggingface/hub")
}

/// A token for gated repositories: `$HF_TOKEN`, else the `token` file huggingface_hub's login
/// writes beside the hub cache.
fn token(cache: &Path) -> Option<String> {
    const MAX_TOKEN_BYTES: u64 = 4096;
    let from_env = std::env::var("HF_TOKEN").ok();
    let from_file = || {
        use std::io::Read;
        let mut text = String::new();
        pentimento_engine::regular_file::open(&cache.parent()?.join("token"))
            .ok()?
            .take(MAX_TOKEN_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let token = from_env.or_else(from_file)?.trim().to_string();
    // A token goes into a header: anything but visible ASCII would break or inject one.
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())).then_some(token)
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
    http: Http,
    cache: PathBuf,
    endpoint: String,
}

impl Hub {
    /// The hub at `endpoint` (default: [`endpoint()`]) with its cache in `cache` (default:
    /// [`cache_dir()`]); a token from `$HF_TOKEN` or the cache's token file, for gated models.
    pub fn new(
        endpoint_override: Option<String>,
        cache: Option<PathBuf>,
    ) -> Result<Self, HubError> {
        Self::with_timeouts(endpoint_override, cache, Timeouts::default())
    }

    pub fn with_timeouts(
        endpoint_override: Option<String>,
        cache: Option<PathBuf>,
        timeouts: Timeouts,
    ) -> Result<Self, HubError> {
        let endpoint = endpoint_override.unwrap_or_else(endpoint);
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(HubError::Other {
                what: endpoint,
                reason: "not an http(s) address".into(),
            });
        }
        let cache = cache.unwrap_or_else(cache_dir);
        let http = Http::new(&endpoint, token(&cache), timeouts);
        Ok(Self {
            http,
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
        let revision = revision.unwrap_or("main");
        let revision_path = safe_relative(revision).map_err(|reason| HubError::Other {
            what: format!("revision of {id}"),
            reason,
        })?;
        let repo_cache = RepoCache::new(&self.cache, &id);
        // With a listing, every file is fetched at the commit it names, so a repository updated
        // mid-pull cannot leave a snapshot of two commits.
        let (wanted, listed_commit) = if files.is_empty() {
            let listing = self.http.listing(&id, revision)?;
            let wanted =
                plan(&listing.files).ok_or_else(|| HubError::NothingToFetch(id.clone()))?;
            (wanted, Some(listing.commit))
        } else {
            (files.to_vec(), None)
        };
        let checked: Vec<(String, PathBuf)> = wanted
            .iter()
            .map(|f| {
                safe_relative(f)
                    .map(|p| (f.clone(), p))
                    .map_err(|reason| HubError::Refused {
                        what: format!("{id}: a file name"),
                        reason,
                    })
            })
            .collect::<Result<_, _>>()?;
        on_event(PullEvent::Planned {
            files: wanted.clone(),
        });
        let mut last = None;
        for (file, rel) in &checked {
            let known = listed_commit
                .clone()
                .or_else(|| repo_cache.commit_for(revision));
            if let Some(commit) = known {
                let path = repo_cache.snapshot_dir(&commit).join(rel);
                if path.is_file() {
                    on_event(PullEvent::Cached { file: file.clone() });
                    last = Some((file.clone(), commit, path));
                    continue;
                }
            }
            let what = format!("{id}/{file}");
            let at = listed_commit.as_deref().unwrap_or(revision);
            let meta = self.http.metadata(&id, at, file)?;
            if listed_commit.as_ref().is_some_and(|c| *c != meta.commit) {
                return Err(HubError::Refused {
                    what,
                    reason: format!(
                        "commit {} for a file of commit {}",
                        meta.commit,
                        listed_commit.as_deref().unwrap_or_default()
                    ),
                });
            }
            let io = |e: std::io::Error| HubError::Other {
                what: what.clone(),
                reason: e.to_string(),
            };
            let blob = repo_cache.blob(&meta.etag);
            if !blob.is_file() {
                let part = repo_cache.incomplete(&meta.etag);
                let mut reporter = Reporter::new(file, on_event);
                self.http
                    .download(&meta, &what, &part, &mut |done, total, first| {
                        reporter.update(done, total, first)
                    })?;
                reporter.report();
                std::fs::rename(&part, &blob).map_err(io)?;
            }
            let path = repo_cache.link(&meta.commit, rel, &meta.etag).map_err(io)?;
            if revision != meta.commit {
                repo_cache
                    .set_ref(&revision_path, &meta.commit)
                    .map_err(io)?;
            }
            on_event(PullEvent::Downloaded { file: file.clone() });
            last = Some((file.clone(), meta.commit, path));
        }
        let (file, commit, path) = last.ok_or_else(|| HubError::NothingToFetch(id.clone()))?;
        if wanted.len() == 1 && !file.ends_with(".json") {
            return Ok(path);
        }
        Ok(repo_cache.snapshot_dir(&commit))
    }
}

/// A short name from [`KNOWN`] or an `owner/name` id.
pub fn resolve_repo(repo: &str) -> Result<String, HubError> {
    if let Some((_, id, _)) = KNOWN.iter().find(|(short, _, _)| *short == repo) {
        return Ok(id.to_string());
    }
    let valid = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
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

/// Turns the download's byte counts into [`PullEvent::Progress`], at most ten a second.
struct Reporter<'a> {
    file: String,
    on_event: &'a mut dyn FnMut(PullEvent),
    done: u64,
    total: u64,
    resumed_from: u64,
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
            started: Instant::now(),
            last: None,
        }
    }

    /// `done` of `total` bytes; `start` marks where this request began (a resumed download
    /// starts at what was already there).
    fn update(&mut self, done: u64, total: u64, start: bool) {
        self.done = done;
        self.total = total;
        if start {
            self.resumed_from = done;
            self.started = Instant::now();
        }
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due {
            self.report();
        }
    }

    fn report(&mut self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        (self.on_event)(PullEvent::Progress {
            file: self.file.clone(),
            done: self.done,
            total: self.total,
            bytes_per_second: self.done.saturating_sub(self.resumed_from) as f64 / secs,
        });
        self.last = Some(Instant::now());
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
        assert!(resolve_repo("../..").is_err());
        assert!(resolve_repo("a/..").is_err());
    }
}
