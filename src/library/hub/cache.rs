//! The hub cache's layout, shared with huggingface_hub, diffusers and ComfyUI:
//! `models--OWNER--NAME/{blobs/ETAG, refs/REVISION, snapshots/COMMIT/FILE → ../../blobs/ETAG}`.
//!
//! Every name that becomes a path here arrived from a server or a command line, so each is
//! checked before it is joined: commits are 40 hex digits, ETags hex tokens, file names and
//! revisions relative paths of plain components that cannot leave the repository's folder.

use std::path::{Component, Path, PathBuf};

/// Longer than any file path in a model repository; a bound on what a listing may claim.
pub const MAX_NAME_BYTES: usize = 1024;
/// Folder depth of a repository file; model repositories nest two or three levels.
pub const MAX_NAME_PARTS: usize = 16;
/// Longest ETag taken as a blob name: a SHA-256 is 64 hex digits, a git SHA-1 40.
pub const MAX_ETAG_LEN: usize = 128;

/// `name` (a repository file or a revision, `/`-separated) as a relative path that stays inside
/// the folder it is joined to, or why it is refused.
pub fn safe_relative(name: &str) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a name of {} bytes (at most {MAX_NAME_BYTES})",
            name.len()
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == ':')
    {
        return Err(format!(
            "{}: control characters, `\\` and `:` are not allowed",
            shown(name)
        ));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() > MAX_NAME_PARTS {
        return Err(format!(
            "{}: nested deeper than {MAX_NAME_PARTS} folders",
            shown(name)
        ));
    }
    let mut path = PathBuf::new();
    for part in parts {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("{}: not a plain relative path", shown(name)));
        }
        path.push(part);
    }
    // Belt and braces: whatever the platform makes of the components, only plain names.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("{}: not a plain relative path", shown(name)));
    }
    Ok(path)
}

/// A git commit id as the hub gives it: 40 lowercase hex digits.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The blob name an `ETag` header stands for: the value without `W/` and quotes, which must be
/// hex digits (the hub sends a file's SHA-256 or its git SHA-1).
pub fn etag_name(header: &str) -> Option<String> {
    let v = header.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    let ok = !v.is_empty()
        && v.len() <= MAX_ETAG_LEN
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| v.to_string())
}

/// A server's text shown in a message: quoted, escaped and cut short.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// One repository's folder in the cache.
pub struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    /// `repo_id` must already be a checked `owner/name`.
    pub fn new(cache: &Path, repo_id: &str) -> Self {
        Self {
            root: cache.join(format!("models--{}", repo_id.replace('/', "--"))),
        }
    }

    /// The commit `revision` names: itself when it is one, else what `refs/REVISION` recorded.
    pub fn commit_for(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let path = self.root.join("refs").join(safe_relative(revision).ok()?);
        // A ref is a 40-character commit id.
        let text = pentimento_engine::regular_file::read_to_string(&path, 1024).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// `commit` and `file` must be checked ([`is_commit`], [`safe_relative`]).
    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// Where a blob grows while it downloads (the name huggingface_hub uses, so either tool
    /// resumes the other's download).
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn set_ref(&self, revision: &Path, commit: &str) -> std::io::Result<()> {
        let path = self.root.join("refs").join(revision);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        pentimento_engine::atomic_file::write(&path, commit.as_bytes())
    }

    /// Points `snapshots/COMMIT/FILE` at the blob (a relative symlink where the platform has
    /// them, else a copy) and returns it.
    pub fn link(&self, commit: &str, file: &Path, etag: &str) -> std::io::Result<PathBuf> {
        let target = self.snapshot_dir(commit).join(file);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if target.symlink_metadata().is_ok() {
            std::fs::remove_file(&target)?;
        }
        #[cfg(unix)]
        {
            let up = "../".repeat(file.components().count() + 1);
            std::os::unix::fs::symlink(format!("{up}blobs/{etag}"), &target)?;
        }
        #[cfg(not(unix))]
        std::fs::copy(self.blob(etag), &target).map(|_| ())?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_the_cache_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "unet/../../x",
            "a//b",
            "./a",
            "a/.",
            "C:/x",
            "a\\..\\b",
            "a\0b",
            "new\nline",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        assert!(safe_relative(&"a/".repeat(MAX_NAME_PARTS)).is_err());
        assert!(safe_relative(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
        assert_eq!(
            safe_relative("unet/diffusion pytorch model.safetensors").unwrap(),
            Path::new("unet").join("diffusion pytorch model.safetensors")
        );
        assert!(safe_relative("refs/pr/1").is_ok());
    }

    #[test]
    fn commits_and_etags_are_hex_tokens() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("0123456789abcdef0123456789abcdef0123456"));
        assert!(!is_commit("../../0123456789abcdef0123456789abcdef01"));
        assert!(!is_commit("0123456789ABCDEF0123456789ABCDEF01234567"));
        assert_eq!(etag_name("\"abc123\"").as_deref(), Some("abc123"));
        assert_eq!(etag_name("W/\"abc123\"").as_deref(), Some("abc123"));
        for bad in [
            "\"/abs/path\"",
            "\"../../x\"",
            "\"\"",
            "\"abc\"def\"",
            &"a".repeat(129),
        ] {
            assert_eq!(etag_name(bad), None, "{bad}");
        }
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }
}
