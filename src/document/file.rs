//! The `.pentimento` document: a PNG of the image (RGBA, so any viewer opens it) that also
//! carries the mask in a private ancillary chunk and the record of what made the image in an
//! iTXt chunk. Written atomically; read within bounds (the image through the decoder's limits,
//! the mask decompressed to exactly its size).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Document;
use crate::engine::params::GenerationParams;
use crate::engine::png_info::ImageRecord;

/// The mask chunk: ancillary (`p`), private (`t`), reserved bit clear (`M`), safe to copy (`k`).
const MASK_CHUNK: [u8; 4] = *b"ptMk";
/// The iTXt keyword of the document's description.
const KEYWORD: &str = "pentimento-document";
/// The format version written; readers refuse newer ones rather than misread them.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DocumentFileError {
    #[error("{0}: cannot read: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a Pentimento document")]
    NotADocument(String),
    #[error("{0}: a document of version {1}, newer than this app reads ({VERSION})")]
    Newer(String, u32),
    #[error("{0}: damaged document: {1}")]
    Damaged(String, String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Description {
    version: u32,
    #[serde(default)]
    record: Option<ImageRecord>,
    /// The prompt panel's settings when the document was saved.
    #[serde(default)]
    settings: Option<GenerationParams>,
}

/// What a document file holds, copied out of a `Document` (so a thread can write it while
/// painting goes on).
#[derive(Clone)]
pub struct DocumentSnapshot {
    width: usize,
    height: usize,
    rgba: Vec<u8>,
    mask: Vec<u8>,
    record: Option<ImageRecord>,
    settings: Option<GenerationParams>,
}

impl DocumentSnapshot {
    pub fn of(doc: &Document) -> Self {
        Self {
            width: doc.width,
            height: doc.height,
            rgba: doc.rgba.clone(),
            mask: doc.mask.clone(),
            record: doc.record.clone(),
            settings: None,
        }
    }

    /// The prompt settings to keep with the document.
    pub fn with_settings(mut self, settings: GenerationParams) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Writes the document to `path`, atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let to_io = |e: png::EncodingError| std::io::Error::other(e.to_string());
        let description = serde_json::to_string(&Description {
            version: VERSION,
            record: self.record.clone(),
            settings: self.settings.clone(),
        })
        .map_err(std::io::Error::other)?;
        let mask = miniz_oxide::deflate::compress_to_vec_zlib(&self.mask, 6);
        crate::engine::atomic_file::write_with(path, |out| {
            let mut enc = png::Encoder::new(out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            enc.add_itxt_chunk(KEYWORD.into(), description.clone())
                .map_err(to_io)?;
            let mut writer = enc.write_header().map_err(to_io)?;
            writer
                .write_chunk(png::chunk::ChunkType(MASK_CHUNK), &mask)
                .map_err(to_io)?;
            writer.write_image_data(&self.rgba).map_err(to_io)?;
            writer.finish().map_err(to_io)
        })
    }
}

/// Whether `bytes` are a document (a PNG with the document's description).
pub fn is_document(bytes: &[u8]) -> bool {
    crate::engine::png_info::read_text_chunks(bytes)
        .iter()
        .any(|t| t.keyword == KEYWORD)
}

/// A document read back, with the prompt settings saved beside it (when they were, and valid).
pub struct Opened {
    pub doc: Document,
    pub settings: Option<GenerationParams>,
}

/// Reads the document at `path`: image, mask, record and settings; its undo history starts
/// afresh.
pub fn read(path: &Path) -> Result<Opened, DocumentFileError> {
    let name = path.display().to_string();
    let bytes = crate::engine::png_info::read_png_file(path)
        .map_err(|e| DocumentFileError::Io(name.clone(), e))?;
    let description = crate::engine::png_info::read_text_chunks(&bytes)
        .into_iter()
        .find(|t| t.keyword == KEYWORD)
        .ok_or_else(|| DocumentFileError::NotADocument(name.clone()))?;
    let damaged = |m: String| DocumentFileError::Damaged(name.clone(), m);
    let description: Description =
        serde_json::from_str(&description.text).map_err(|e| damaged(e.to_string()))?;
    if description.version > VERSION {
        return Err(DocumentFileError::Newer(name, description.version));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes));
    reader.set_format(image::ImageFormat::Png);
    reader.limits(crate::engine::image::decode_limits());
    let rgba = reader
        .decode()
        .map_err(|e| damaged(format!("image: {e}")))?
        .to_rgba8();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let packed = crate::engine::png_info::find_chunk(&bytes, &MASK_CHUNK)
        .ok_or_else(|| damaged("no mask".into()))?;
    let mask = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(packed, w * h)
        .map_err(|_| damaged("the mask does not decompress to the image's size".into()))?;
    if mask.len() != w * h {
        return Err(damaged(format!(
            "a mask of {} bytes for {w}×{h}",
            mask.len()
        )));
    }
    let mut doc = Document::blank(w, h);
    doc.rgba = rgba.into_raw();
    doc.mask = mask;
    doc.record = description.record;
    Ok(Opened {
        doc,
        settings: description.settings.filter(|s| s.validate().is_ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::brush::{BrushSettings, Tool};

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pentimento-docfile-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn round_trips_image_mask_and_record_and_refuses_damage() {
        let mut doc = Document::blank(40, 30);
        doc.begin_stroke(
            Tool::ColorBrush([200, 10, 10]),
            BrushSettings::default(),
            (10.0, 10.0),
            1.0,
        );
        doc.end_stroke();
        doc.begin_stroke(Tool::MaskBrush, BrushSettings::default(), (30.0, 20.0), 1.0);
        doc.end_stroke();
        let path = temp("a.pentimento");
        let settings = GenerationParams {
            prompt: "a lighthouse".into(),
            ..Default::default()
        };
        DocumentSnapshot::of(&doc)
            .with_settings(settings.clone())
            .write(&path)
            .unwrap();
        let opened = read(&path).unwrap();
        assert_eq!(opened.settings, Some(settings));
        let back = opened.doc;
        assert_eq!(back.size(), (40, 30));
        assert_eq!(back.rgba(), doc.rgba());
        assert_eq!(back.mask_bytes(), doc.mask_bytes());
        // Any image viewer reads it as a PNG.
        let as_png = image::load_from_memory_with_format(
            &std::fs::read(&path).unwrap(),
            image::ImageFormat::Png,
        );
        assert_eq!(as_png.unwrap().width(), 40);

        let bytes = std::fs::read(&path).unwrap();
        let cut = temp("cut.pentimento");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        assert!(read(&cut).is_err());
        // A PNG that is not a document.
        let plain = temp("plain.png");
        image::RgbImage::new(4, 4).save(&plain).unwrap();
        assert!(matches!(
            read(&plain),
            Err(DocumentFileError::NotADocument(_))
        ));
        // A mask chunk that inflates past the image's size (a bomb) is refused.
        let mut forged = DocumentSnapshot::of(&doc);
        forged.mask = vec![255; 40 * 30 * 50];
        let bomb = temp("bomb.pentimento");
        forged.write(&bomb).unwrap();
        assert!(matches!(read(&bomb), Err(DocumentFileError::Damaged(..))));
    }
}
