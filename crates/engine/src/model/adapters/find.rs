//! Files found by name in folders (LoRAs, embeddings), and the LoRAs a job uses: those its prompt names with `<lora:NAME:W>` (or `<lyco:…>`), found by
//! name in LoRA folders as AUTOMATIC1111 finds them (the file's stem, in any subfolder), and
//! those given by path.

use std::path::{Path, PathBuf};

use super::LoraRef;
use crate::error::{EngineError, Result};
use crate::prompt::extra_networks;

/// File types a LoRA comes in.
const EXTENSIONS: [&str; 3] = ["safetensors", "pt", "ckpt"];
/// How deep and how wide a LoRA folder is searched.
pub const MAX_SEARCH_DEPTH: usize = 6;
pub const MAX_SEARCH_ENTRIES: usize = 100_000;
/// Longest name a tag may give (file names are at most 255 bytes).
pub const MAX_NAME_BYTES: usize = 255;
/// Suggestions for an unknown name are looked for among this many files at most, by names of
/// at most this many characters (the edit distance is quadratic).
const MAX_SUGGESTION_FILES: usize = 5_000;
const MAX_SUGGESTION_CHARS: usize = 64;

/// Every LoRA file under `dirs` (bounded), as (stem, path), the first folder winning a name.
pub fn lora_files(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    files_under(dirs, &EXTENSIONS)
}

/// Every file with one of `extensions` under `dirs` (bounded), as (stem, path).
pub fn files_under(dirs: &[PathBuf], extensions: &[&str]) -> Vec<(String, PathBuf)> {
    let mut found = vec![];
    let mut seen = 0usize;
    for dir in dirs {
        walk(dir, 0, extensions, &mut seen, &mut found);
    }
    found
}

fn walk(
    dir: &Path,
    depth: usize,
    extensions: &[&str],
    seen: &mut usize,
    found: &mut Vec<(String, PathBuf)>,
) {
    if depth > MAX_SEARCH_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        *seen += 1;
        if *seen > MAX_SEARCH_ENTRIES {
            return;
        }
        // Folders are followed only when they are not links: a link loop cannot trap the walk.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, depth + 1, extensions, seen, found);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                found.push((stem.to_string(), path.clone()));
            }
        }
    }
}

/// The LoRAs `prompt` names, found in `dirs`. An unknown name is an error naming the nearest
/// ones; a weight that is not a number is an error; other extra networks (hypernetworks) are
/// errors too, never silently ignored.
pub fn prompt_loras(prompt: &str, dirs: &[PathBuf]) -> Result<Vec<LoraRef>> {
    let (_, tags) = extra_networks(prompt);
    if tags.is_empty() {
        return Ok(vec![]);
    }
    let files = lora_files(dirs);
    let mut out = vec![];
    for tag in tags {
        if !matches!(tag.kind.as_str(), "lora" | "lyco") {
            return Err(EngineError::InvalidParams(format!(
                "<{}:…> in the prompt: only <lora:…> and <lyco:…> are understood",
                tag.kind
            )));
        }
        let name = tag.args.first().map(String::as_str).unwrap_or("");
        if name.len() > MAX_NAME_BYTES {
            return Err(EngineError::InvalidParams(format!(
                "<{}:…>: a name of {} bytes (at most {MAX_NAME_BYTES})",
                tag.kind,
                name.len()
            )));
        }
        let number = |w: &String| {
            w.trim().parse::<f32>().map_err(|_| {
                EngineError::InvalidParams(format!(
                    "<{}:{name}:{w}>: the weight is not a number",
                    tag.kind
                ))
            })
        };
        // AUTOMATIC1111's `<lora:NAME:TE:UNET>`: the third is the UNet's weight. Named
        // options (`dyn=…`, `te=…`) it also takes are not read: refused, not ignored.
        if let Some(extra) = tag.args.iter().skip(1).find(|a| a.contains('=')) {
            return Err(EngineError::InvalidParams(format!(
                "<{}:{name}:…>: the option {extra} is not supported",
                tag.kind
            )));
        }
        if tag.args.len() > 3 {
            return Err(EngineError::InvalidParams(format!(
                "<{}:{name}:…>: at most a weight and a UNet weight",
                tag.kind
            )));
        }
        let weight = tag.args.get(1).map(number).transpose()?.unwrap_or(1.0);
        let unet_weight = tag.args.get(2).map(number).transpose()?;
        let Some(path) = find_named(name, &files, dirs) else {
            return Err(EngineError::InvalidParams(unknown(name, &files, dirs)));
        };
        out.push(LoraRef {
            path,
            weight,
            unet_weight,
        });
    }
    Ok(out)
}

/// The file a tag names: by its stem, or with a subfolder (`styles/ink`) by its path inside a
/// LoRA folder — never a file of that stem in another subfolder.
fn find_named(name: &str, files: &[(String, PathBuf)], dirs: &[PathBuf]) -> Option<PathBuf> {
    let parts: Vec<&str> = name.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    if parts.len() <= 1 {
        return files
            .iter()
            .find(|(stem, _)| stem == name)
            .map(|(_, p)| p.clone());
    }
    files.iter().map(|(_, p)| p).find_map(|path| {
        let inside = dirs.iter().find_map(|d| path.strip_prefix(d).ok())?;
        let rel = inside.with_extension("");
        let rel: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        (rel == parts).then(|| path.clone())
    })
}

fn unknown(name: &str, files: &[(String, PathBuf)], dirs: &[PathBuf]) -> String {
    let short = |s: &str| s.chars().count() <= MAX_SUGGESTION_CHARS;
    let lower = name.to_lowercase();
    let mut near: Vec<(usize, &str)> = if short(name) {
        files
            .iter()
            .take(MAX_SUGGESTION_FILES)
            .filter(|(stem, _)| short(stem))
            .map(|(stem, _)| (distance(&stem.to_lowercase(), &lower), stem.as_str()))
            .filter(|(d, stem)| *d <= stem.len().max(name.len()) / 2)
            .collect()
    } else {
        vec![]
    };
    near.sort();
    near.dedup_by(|a, b| a.1 == b.1);
    let folders = if dirs.is_empty() {
        "no LoRA folders (give --lora-dir)".to_string()
    } else {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match near.as_slice() {
        [] => format!("no LoRA named {name:?} in {folders}"),
        near => format!(
            "no LoRA named {name:?} in {folders}; did you mean {}?",
            near.iter()
                .take(3)
                .map(|(_, s)| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_weights_suggestions_and_bounds() {
        let dir = std::env::temp_dir().join(format!("pentimento-lora-find-{}", std::process::id()));
        let sub = dir.join("styles");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("watercolor_v2.safetensors"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&dir, sub.join("loop")).ok();
        let dirs = vec![dir.clone()];
        let got = prompt_loras("a boat, <lora:watercolor_v2:0.6>", &dirs).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].weight, 0.6);
        assert!(got[0].path.ends_with("styles/watercolor_v2.safetensors"));
        let e = prompt_loras("<lora:watercolour_v2:1>", &dirs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean \"watercolor_v2\""), "{e}");
        let e = prompt_loras("<lora:watercolor_v2:heavy>", &dirs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a number"), "{e}");
        assert!(prompt_loras("<hypernet:x:1>", &dirs).is_err());
        assert_eq!(
            prompt_loras("<lora:watercolor_v2>", &dirs).unwrap()[0].weight,
            1.0
        );
        assert!(prompt_loras("no tags, a < b > c", &dirs)
            .unwrap()
            .is_empty());
        // AUTOMATIC1111's text-encoder and UNet weights.
        let got = prompt_loras("<lora:watercolor_v2:0.5:-1>", &dirs).unwrap();
        assert_eq!((got[0].weight, got[0].unet_weight), (0.5, Some(-1.0)));
        assert!(prompt_loras("<lora:watercolor_v2:1:2:3>", &dirs).is_err());
        assert!(prompt_loras("<lora:watercolor_v2:1:dyn=4>", &dirs).is_err());
        // A subfolder in the name picks that file, never one of the same stem elsewhere.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("watercolor_v2.safetensors"), b"y").unwrap();
        let got = prompt_loras("<lora:other/watercolor_v2>", &dirs).unwrap();
        assert!(got[0].path.ends_with("other/watercolor_v2.safetensors"));
        assert!(prompt_loras("<lora:nowhere/watercolor_v2>", &dirs).is_err());
        assert!(prompt_loras("<lora:../styles/watercolor_v2>", &dirs).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
