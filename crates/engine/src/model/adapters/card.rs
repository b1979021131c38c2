//! What a LoRA browser shows of a file without loading its weights: the trigger words its
//! trainer recorded (kohya's `ss_tag_frequency`, the tags of the training captions by count),
//! its output name and base model, and a preview picture beside it as AUTOMATIC1111 finds one
//! (`NAME.preview.png`, `NAME.png`, … `.jpg`/`.jpeg`/`.webp`). Every read is bounded: a hostile
//! header or picture gives a card with less on it, never a stall.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::image::RgbImage;

/// Largest safetensors header read for metadata (kohya's tag lists reach a few MiB).
pub const MAX_HEADER_BYTES: u64 = 16 << 20;
/// Largest preview file decoded.
pub const MAX_PREVIEW_BYTES: u64 = 32 << 20;
/// Trigger words kept, the most frequent first.
pub const MAX_TRIGGER_WORDS: usize = 12;
/// Longest trigger word kept (longer tags are whole captions, not words to type).
pub const MAX_WORD_CHARS: usize = 80;
/// The preview's longer side once scaled down.
pub const THUMBNAIL_SIDE: usize = 96;

/// Picture file types looked for beside an adapter.
const PREVIEW_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Card {
    /// Tags of the training captions, most frequent first, with their counts.
    pub trigger_words: Vec<(String, u64)>,
    /// The name the trainer gave it (`ss_output_name`).
    pub output_name: Option<String>,
    /// The model it was trained on (`ss_sd_model_name`).
    pub base_model: Option<String>,
    /// The preview picture, at most `THUMBNAIL_SIDE` a side.
    pub thumbnail: Option<RgbImage>,
}

/// The card of the adapter file at `path` (empty where nothing can be read).
pub fn read_card(path: &Path) -> Card {
    let metadata = safetensors_metadata(path).unwrap_or_default();
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(MAX_WORD_CHARS * 2).collect::<String>())
            .filter(|s| !s.trim().is_empty())
    };
    Card {
        trigger_words: text_tags(metadata.get("ss_tag_frequency")),
        output_name: text("ss_output_name"),
        base_model: text("ss_sd_model_name"),
        thumbnail: preview_path(path).and_then(|p| thumbnail(&p)),
    }
}

/// The `__metadata__` of a safetensors file (its values are strings), if it has any.
fn safetensors_metadata(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return None;
    }
    let mut file = crate::regular_file::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return None;
    }
    let mut header = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut header).ok()?;
    // serde_json bounds nesting (128 levels) itself.
    let mut value: serde_json::Value = serde_json::from_slice(&header).ok()?;
    match value.get_mut("__metadata__")?.take() {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// kohya's `ss_tag_frequency`: a JSON string `{folder: {tag: count}}`; the tags summed over the
/// folders, most frequent first (ties by name), at most `MAX_TRIGGER_WORDS`.
fn text_tags(value: Option<&serde_json::Value>) -> Vec<(String, u64)> {
    let Some(serde_json::Value::Object(folders)) = value
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
    else {
        return vec![];
    };
    let mut counts: std::collections::HashMap<String, u64> = Default::default();
    for tags in folders.values() {
        let Some(tags) = tags.as_object() else {
            continue;
        };
        for (tag, count) in tags {
            let tag = tag.trim();
            if tag.is_empty() || tag.chars().count() > MAX_WORD_CHARS {
                continue;
            }
            let count = count.as_u64().unwrap_or(0);
            let total = counts.entry(tag.to_string()).or_default();
            *total = total.saturating_add(count);
        }
    }
    let mut tags: Vec<(String, u64)> = counts.into_iter().collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    tags.truncate(MAX_TRIGGER_WORDS);
    tags
}

/// The preview picture AUTOMATIC1111 would show for the adapter at `path`.
pub fn preview_path(path: &Path) -> Option<PathBuf> {
    let stem = path.file_stem()?.to_str()?;
    let dir = path.parent()?;
    ["preview.", ""]
        .iter()
        .flat_map(|infix| {
            PREVIEW_EXTENSIONS
                .iter()
                .map(move |ext| dir.join(format!("{stem}.{infix}{ext}")))
        })
        .find(|p| p.is_file())
}

/// The picture at `path` scaled to at most `THUMBNAIL_SIDE` a side.
fn thumbnail(path: &Path) -> Option<RgbImage> {
    let file = crate::regular_file::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_PREVIEW_BYTES {
        return None;
    }
    let image = crate::image::read_image_file(path).ok()?;
    let scale = THUMBNAIL_SIDE as f64 / image.width.max(image.height).max(1) as f64;
    if scale >= 1.0 {
        return Some(image);
    }
    let side = |v: usize| ((v as f64 * scale).round() as usize).max(1);
    Some(image.resized(side(image.width), side(image.height)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("pentimento-card-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A safetensors file whose header is `header` (no tensors).
    fn with_header(name: &str, header: &[u8]) -> PathBuf {
        let path = dir().join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn trigger_words_names_and_previews() {
        let tags = serde_json::json!({
            "10_inkstyle": {"inkstyle": 40, "heron": 12, " ": 3},
            "5_more": {"heron": 30, "reeds": 2}
        })
        .to_string();
        let header = serde_json::json!({
            "__metadata__": {
                "ss_tag_frequency": tags,
                "ss_output_name": "inkstyle_v2",
                "ss_sd_model_name": "v1-5-pruned.safetensors"
            }
        })
        .to_string();
        let path = with_header("inkstyle.safetensors", header.as_bytes());
        image::RgbImage::from_pixel(300, 150, image::Rgb([9, 99, 199]))
            .save(dir().join("inkstyle.preview.png"))
            .unwrap();
        let card = read_card(&path);
        assert_eq!(
            card.trigger_words,
            [
                ("heron".to_string(), 42),
                ("inkstyle".to_string(), 40),
                ("reeds".to_string(), 2)
            ]
        );
        assert_eq!(card.output_name.as_deref(), Some("inkstyle_v2"));
        assert_eq!(card.base_model.as_deref(), Some("v1-5-pruned.safetensors"));
        let thumb = card.thumbnail.unwrap();
        assert_eq!((thumb.width, thumb.height), (96, 48));
        assert_eq!(&thumb.pixels[..3], &[9, 99, 199]);
    }

    /// Headers that lie, nest, overflow or hold the wrong types give an empty card.
    #[test]
    fn hostile_headers_and_previews_give_less_not_a_stall() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not_json", b"{{{{".to_vec()),
            ("deep", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
            ("tags_not_string", br#"{"__metadata__":{"ss_tag_frequency":{"a":{"b":1}}}}"#.to_vec()),
            ("tags_not_json", br#"{"__metadata__":{"ss_tag_frequency":"{oops"}}"#.to_vec()),
            ("metadata_list", br#"{"__metadata__":[1,2]}"#.to_vec()),
            ("counts", br#"{"__metadata__":{"ss_tag_frequency":"{\"d\":{\"x\":-5,\"y\":1e300,\"z\":\"many\"}}"}}"#.to_vec()),
        ];
        for (name, header) in cases {
            let card = read_card(&with_header(&format!("{name}.safetensors"), &header));
            assert!(
                card.trigger_words.iter().all(|(_, c)| *c == 0),
                "{name}: {card:?}"
            );
            assert_eq!(card.output_name, None, "{name}");
        }
        // A header length past the bound is not read at all.
        let huge = dir().join("huge.safetensors");
        std::fs::write(&huge, u64::MAX.to_le_bytes()).unwrap();
        assert_eq!(read_card(&huge), Card::default());
        // A truncated file, a folder with the adapter's name, a broken preview.
        let cut = dir().join("cut.safetensors");
        std::fs::write(&cut, [5, 0, 0]).unwrap();
        assert_eq!(read_card(&cut), Card::default());
        let folder = dir().join("folder.safetensors");
        std::fs::create_dir_all(&folder).unwrap();
        assert_eq!(read_card(&folder), Card::default());
        let broken = with_header("broken.safetensors", b"{}");
        std::fs::write(dir().join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert_eq!(read_card(&broken).thumbnail, None);
        // Many tags: only the most frequent are kept.
        let many: serde_json::Map<String, serde_json::Value> = (0..5000)
            .map(|i| (format!("tag{i}"), serde_json::json!(i)))
            .collect();
        let tags = serde_json::json!({ "d": many }).to_string();
        let header = serde_json::json!({"__metadata__": {"ss_tag_frequency": tags}}).to_string();
        let card = read_card(&with_header("many.safetensors", header.as_bytes()));
        assert_eq!(card.trigger_words.len(), MAX_TRIGGER_WORDS);
        assert_eq!(card.trigger_words[0], ("tag4999".to_string(), 4999));
    }
}
