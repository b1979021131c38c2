//! The hub's HTTP side: a repository's listing, a file's metadata (commit, ETag, size, where
//! its bytes are) and the download of those bytes, resumable and checked. Nothing a server sends
//! is trusted: headers are validated before they name anything, bodies are capped at the size
//! the metadata declared, and every request has connect and read timeouts.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::cache::{etag_name, is_commit, shown};
use super::HubError;

/// Redirects followed for one request: a renamed repository and a CDN are two.
pub const MAX_REDIRECTS: usize = 5;
/// No single model file is larger (the biggest published checkpoints are ~25 GB); a server
/// declaring more is refused before a byte is written.
pub const MAX_FILE_BYTES: u64 = 64 << 30;
/// A repository listing is a few kilobytes per thousand files.
pub const MAX_LISTING_BYTES: u64 = 16 << 20;
const CHUNK: usize = 1 << 20;

/// How long a connection may take to open, and a read to wait for bytes.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(60),
        }
    }
}

/// What the hub says about one file before its bytes are fetched.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub commit: String,
    pub etag: String,
    pub size: u64,
    /// Where the bytes are: the resolve URL, or the CDN it redirects to.
    pub url: String,
}

/// Which redirects a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    Anywhere,
    /// Only within the endpoint's host (a renamed repository).
    WithinEndpoint,
}

pub struct Listing {
    pub commit: String,
    pub files: Vec<String>,
}

pub struct Http {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

impl Http {
    pub fn new(endpoint: &str, token: Option<String>, timeouts: Timeouts) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeouts.connect)
            .timeout_read(timeouts.read)
            .timeout_write(timeouts.read)
            // Redirects are followed here, one by one, so each Location is checked and the
            // token never travels to another host.
            .redirects(0)
            .user_agent(concat!("pentimento/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// `GET url`, with the token only when `url` is on the endpoint's host.
    fn get(&self, url: &str, range: Option<&str>, what: &str) -> Result<ureq::Response, HubError> {
        let mut req = self.agent.get(url).set("Accept-Encoding", "identity");
        if let Some(range) = range {
            req = req.set("Range", range);
        }
        if let Some(token) = &self.token {
            if origin(url) == origin(&self.endpoint) {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
        }
        req.call().map_err(|e| self.error(e, what))
    }

    fn error(&self, e: ureq::Error, what: &str) -> HubError {
        match e {
            ureq::Error::Status(status @ (401 | 403 | 404), _) => HubError::NotFound {
                what: what.into(),
                endpoint: self.endpoint.clone(),
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
                endpoint: self.endpoint.clone(),
                reason: one_line(&t.to_string()),
            },
        }
    }

    /// The files of `repo` at `revision` and the commit they are at.
    pub fn listing(&self, repo: &str, revision: &str) -> Result<Listing, HubError> {
        let what = format!("repository {repo}");
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode(revision, false)
        );
        let response = self.follow(&url, None, &what, Follow::Anywhere)?.0;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_LISTING_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.broke_off(e))?;
        if body.len() as u64 > MAX_LISTING_BYTES {
            return Err(refused(
                &what,
                format!("a listing over {MAX_LISTING_BYTES} bytes"),
            ));
        }
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        #[derive(serde::Deserialize)]
        struct Info {
            sha: String,
            siblings: Vec<Sibling>,
        }
        let info: Info = serde_json::from_slice(&body)
            .map_err(|e| refused(&what, format!("not a repository listing ({e})")))?;
        if !is_commit(&info.sha) {
            return Err(refused(
                &what,
                format!("a commit id {} that is not one", shown(&info.sha)),
            ));
        }
        Ok(Listing {
            commit: info.sha,
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// The commit, ETag and size of `file`, and where to fetch it, from the headers of a
    /// one-byte request (the hub answers it without sending the file).
    pub fn metadata(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta, HubError> {
        let what = format!("{repo}/{file}");
        let url = format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode(revision, false),
            encode(file, true)
        );
        let (response, url) =
            self.follow(&url, Some("bytes=0-0"), &what, Follow::WithinEndpoint)?;
        let header = |name: &str| response.header(name).map(str::to_string);
        let commit = header("x-repo-commit")
            .ok_or_else(|| refused(&what, "no X-Repo-Commit header".into()))?;
        if !is_commit(&commit) {
            return Err(refused(
                &what,
                format!("a commit id {} that is not one", shown(&commit)),
            ));
        }
        let raw_etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .ok_or_else(|| refused(&what, "no ETag header".into()))?;
        let etag = etag_name(&raw_etag).ok_or_else(|| {
            refused(
                &what,
                format!("an ETag {} that is not a hash", shown(&raw_etag)),
            )
        })?;
        let size = header("x-linked-size")
            .or_else(|| {
                header("content-range").and_then(|r| r.rsplit_once('/').map(|(_, t)| t.to_string()))
            })
            .or_else(|| {
                (response.status() == 200)
                    .then(|| header("content-length"))
                    .flatten()
            })
            .ok_or_else(|| refused(&what, "no size (X-Linked-Size or Content-Range)".into()))?;
        let size: u64 = size.trim().parse().map_err(|_| {
            refused(
                &what,
                format!("a size {} that is not a number", shown(&size)),
            )
        })?;
        if size > MAX_FILE_BYTES {
            return Err(refused(
                &what,
                format!("a size of {size} bytes (more than the {MAX_FILE_BYTES} allowed)"),
            ));
        }
        let url = match response.status() {
            300..=399 => location(&response, &url, &what)?,
            _ => url,
        };
        Ok(FileMeta {
            commit,
            etag,
            size,
            url,
        })
    }

    /// `GET url`, following up to [`MAX_REDIRECTS`] redirects. With [`Follow::WithinEndpoint`]
    /// it stops at a redirect to another host (a CDN), whose headers carry the file's metadata.
    fn follow(
        &self,
        url: &str,
        range: Option<&str>,
        what: &str,
        follow: Follow,
    ) -> Result<(ureq::Response, String), HubError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(&url, range, what)?;
            match response.status() {
                300..=399 => {
                    let next = location(&response, &url, what)?;
                    let leaves = origin(&next) != origin(&self.endpoint);
                    if follow == Follow::WithinEndpoint && leaves {
                        return Ok((response, url));
                    }
                    url = next;
                }
                200..=299 => return Ok((response, url)),
                status => {
                    return Err(HubError::Http {
                        what: what.into(),
                        status,
                    })
                }
            }
        }
        Err(refused(
            what,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// Downloads `meta`'s bytes into `part` (resuming what is there), never more than
    /// `meta.size`, and checks them against the ETag when it is a hash of the content.
    pub fn download(
        &self,
        meta: &FileMeta,
        what: &str,
        part: &Path,
        progress: &mut dyn FnMut(u64, u64, bool),
    ) -> Result<(), HubError> {
        let io = |e: std::io::Error| HubError::Other {
            what: part.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = part.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)
            .map_err(io)?;
        // A second pull of the same file (another window, another tool) waits for nothing and
        // corrupts nothing: it is told.
        if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
            return Err(refused(
                what,
                "another download of this file is running".into(),
            ));
        }
        let mut have = file.metadata().map_err(io)?.len();
        if have > meta.size {
            file.set_len(0).map_err(io)?;
            have = 0;
        }
        if have < meta.size {
            let range = (have > 0).then(|| format!("bytes={have}-"));
            let (response, _) = self.follow(&meta.url, range.as_deref(), what, Follow::Anywhere)?;
            if response.status() == 206 {
                let start = response
                    .header("content-range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(have) {
                    return Err(refused(what, "a partial answer for the wrong range".into()));
                }
            } else {
                have = 0;
            }
            file.set_len(have).map_err(io)?;
            file.seek(SeekFrom::Start(have)).map_err(io)?;
            progress(have, meta.size, true);
            let mut reader = response.into_reader();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = file.sync_all();
                        return Err(self.broke_off(e));
                    }
                };
                if have + n as u64 > meta.size {
                    drop(file);
                    let _ = std::fs::remove_file(part);
                    return Err(refused(
                        what,
                        format!("more than the {} bytes it declared", meta.size),
                    ));
                }
                file.write_all(&buf[..n]).map_err(io)?;
                have += n as u64;
                progress(have, meta.size, false);
            }
            file.sync_all().map_err(io)?;
            if have < meta.size {
                return Err(self.broke_off(std::io::Error::other(format!(
                    "{have} of {} bytes",
                    meta.size
                ))));
            }
        }
        if !matches_etag(&mut file, &meta.etag, meta.size).map_err(io)? {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(refused(
                what,
                "bytes that do not match its checksum (the partial file was removed)".into(),
            ));
        }
        Ok(())
    }

    fn broke_off(&self, e: std::io::Error) -> HubError {
        HubError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: format!(
                "the download broke off ({}); run the same command again to resume",
                one_line(&e.to_string())
            ),
        }
    }
}

/// Whether the file's bytes hash to its ETag: the hub's ETag of a large (LFS) file is its
/// SHA-256, of a small one its git blob SHA-1. Other ETags are not content hashes.
fn matches_etag(file: &mut File, etag: &str, size: u64) -> std::io::Result<bool> {
    enum Hasher {
        Sha256(Sha256),
        GitSha1(Sha1),
    }
    let mut hasher = match etag.len() {
        64 => Hasher::Sha256(Sha256::new()),
        40 => {
            let mut h = Sha1::new();
            h.update(format!("blob {size}\0").as_bytes());
            Hasher::GitSha1(h)
        }
        _ => return Ok(true),
    };
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match &mut hasher {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::GitSha1(h) => h.update(&buf[..n]),
        }
    }
    let digest = match hasher {
        Hasher::Sha256(h) => format!("{:x}", h.finalize()),
        Hasher::GitSha1(h) => format!("{:x}", h.finalize()),
    };
    Ok(digest == etag)
}

fn refused(what: &str, reason: String) -> HubError {
    HubError::Refused {
        what: what.into(),
        reason,
    }
}

/// A redirect's target, absolute, http(s) only.
fn location(response: &ureq::Response, base: &str, what: &str) -> Result<String, HubError> {
    let loc = response.header("location").ok_or_else(|| {
        refused(
            what,
            format!("a redirect (HTTP {}) without a Location", response.status()),
        )
    })?;
    let url = if loc.starts_with('/') && !loc.starts_with("//") {
        format!("{}{loc}", origin(base))
    } else {
        loc.to_string()
    };
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(refused(what, format!("a redirect to {}", shown(loc))));
    }
    Ok(url)
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// Percent-encodes a URL path segment (or path, keeping `/`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/');
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_encoding() {
        assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
        assert_eq!(origin("https://cdn.example"), "https://cdn.example");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(
            encode("unet/a b.safetensors", true),
            "unet/a%20b.safetensors"
        );
    }

    #[test]
    fn the_hub_hashes_are_checked() {
        let dir = std::env::temp_dir().join(format!("pentimento-etag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let mut f = File::open(&path).unwrap();
        // `git hash-object` of "hello\n", and its SHA-256.
        assert!(matches_etag(&mut f, "ce013625030ba8dba906f756967f9e9ca394464a", 6).unwrap());
        assert!(matches_etag(
            &mut f,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            6
        )
        .unwrap());
        assert!(!matches_etag(&mut f, "0000000000000000000000000000000000000000", 6).unwrap());
    }
}
