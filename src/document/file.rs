//! The `.pentimento` document: a PNG of the composite picture (RGBA, so any viewer opens it)
//! that also carries each layer and the mask in private ancillary chunks and a description
//! (layers' names, visibility, opacity and records; the prompt settings) in an iTXt chunk.
//! Written atomically; read within bounds (the image through the decoder's limits, at most
//! `MAX_LAYERS` layers within `MAX_LAYER_BYTES`, each part decompressed to exactly its size).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layers::{Layer, LayerId, LayerKind, LayerProps, MAX_LAYERS, MAX_LAYER_BYTES};
use super::Document;
use crate::engine::params::GenerationParams;
use crate::engine::png_info::ImageRecord;

/// The mask chunk: ancillary (`p`), private (`t`), reserved bit clear (`M`), safe to copy (`k`).
const MASK_CHUNK: [u8; 4] = *b"ptMk";
/// One chunk per layer, bottom first: the layer's RGBA, zlib-compressed.
const LAYER_CHUNK: [u8; 4] = *b"ptLy";
/// The iTXt keyword of the document's description.
const KEYWORD: &str = "pentimento-document";
/// The format version written; readers refuse newer ones rather than misread them.
/// 1: one image (the PNG's own pixels), mask, record, settings. 2: layers.
pub const VERSION: u32 = 2;

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
    /// The record of the picture as a whole (the topmost visible layer's), for other readers.
    #[serde(default)]
    record: Option<ImageRecord>,
    /// The prompt panel's settings when the document was saved.
    #[serde(default)]
    settings: Option<GenerationParams>,
    /// Bottom first; their pixels are the `ptLy` chunks in the same order (version 2).
    #[serde(default)]
    layers: Vec<LayerDescription>,
    /// Index of the layer strokes paint on.
    #[serde(default)]
    active: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerDescription {
    kind: LayerKind,
    #[serde(flatten)]
    props: LayerProps,
    #[serde(default)]
    record: Option<ImageRecord>,
}

/// What a document file holds, copied out of a `Document` (so a thread can write it while
/// painting goes on).
#[derive(Clone)]
pub struct DocumentSnapshot {
    width: usize,
    height: usize,
    /// What every PNG viewer shows.
    composite: Vec<u8>,
    layers: Vec<Layer>,
    active: usize,
    mask: Vec<u8>,
    record: Option<ImageRecord>,
    settings: Option<GenerationParams>,
}

impl DocumentSnapshot {
    pub fn of(doc: &Document) -> Self {
        Self {
            width: doc.width,
            height: doc.height,
            composite: doc.picture_rgba().into_owned(),
            layers: doc.layers.clone(),
            active: doc.layer_index(doc.active).unwrap_or(0),
            mask: doc.mask.clone(),
            record: doc.record().cloned(),
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
            layers: self
                .layers
                .iter()
                .map(|l| LayerDescription {
                    kind: l.kind,
                    props: l.props.clone(),
                    record: l.record.clone(),
                })
                .collect(),
            active: self.active,
        })
        .map_err(std::io::Error::other)?;
        let mask = miniz_oxide::deflate::compress_to_vec_zlib(&self.mask, 6);
        let layers: Vec<Vec<u8>> = self
            .layers
            .iter()
            .map(|l| miniz_oxide::deflate::compress_to_vec_zlib(&l.rgba, 6))
            .collect();
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
            for layer in &layers {
                writer
                    .write_chunk(png::chunk::ChunkType(LAYER_CHUNK), layer)
                    .map_err(to_io)?;
            }
            writer.write_image_data(&self.composite).map_err(to_io)?;
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

/// What a document says of itself without decoding a pixel: for `pentimento info`.
pub struct Summary {
    pub version: u32,
    /// The picture's record (the topmost visible layer's).
    pub record: Option<ImageRecord>,
    /// Bottom first: kind, name, visible, opacity, the seed of its record.
    pub layers: Vec<(LayerKind, String, bool, f32, Option<u64>)>,
}

/// The description of the document in `bytes`, if it is one and it reads.
pub fn summary(bytes: &[u8]) -> Option<Summary> {
    let text = crate::engine::png_info::read_text_chunks(bytes)
        .into_iter()
        .find(|t| t.keyword == KEYWORD)?
        .text;
    let d: Description = serde_json::from_str(&text).ok()?;
    Some(Summary {
        version: d.version,
        layers: d
            .layers
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.props.name.clone(),
                    l.props.visible,
                    l.props.opacity,
                    l.record.as_ref().map(|r| r.params.seed),
                )
            })
            .collect(),
        record: d.record,
    })
}

/// A document read back, with the prompt settings saved beside it (when they were, and valid).
pub struct Opened {
    pub doc: Document,
    pub settings: Option<GenerationParams>,
}

/// Reads the document at `path`: layers, mask, records and settings; its undo history starts
/// afresh. Every compressed part inflates to at most the size the image's header implies.
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
    if description.layers.len() > MAX_LAYERS {
        return Err(damaged(format!(
            "{} layers (at most {MAX_LAYERS})",
            description.layers.len()
        )));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes));
    reader.set_format(image::ImageFormat::Png);
    reader.limits(crate::engine::image::decode_limits());
    let composite = reader
        .decode()
        .map_err(|e| damaged(format!("image: {e}")))?
        .to_rgba8();
    let (w, h) = (composite.width() as usize, composite.height() as usize);
    let mask = inflate_exactly(
        crate::engine::png_info::find_chunk(&bytes, &MASK_CHUNK)
            .ok_or_else(|| damaged("no mask".into()))?,
        w * h,
    )
    .map_err(|m| damaged(format!("mask: {m}")))?;
    let layers = if description.version < 2 || description.layers.is_empty() {
        // Version 1: the image is the one layer.
        vec![Layer {
            id: LayerId(1),
            kind: LayerKind::Background,
            props: LayerProps::named("Background"),
            record: description.record,
            rgba: composite.into_raw(),
        }]
    } else {
        let one = w * h * 4;
        if description.layers.len().saturating_mul(one) > MAX_LAYER_BYTES {
            return Err(damaged(format!(
                "{} layers of {w}×{h} exceed {} MiB",
                description.layers.len(),
                MAX_LAYER_BYTES >> 20
            )));
        }
        let chunks: Vec<&[u8]> =
            crate::engine::png_info::find_chunks(&bytes, LAYER_CHUNK).collect();
        if chunks.len() != description.layers.len() {
            return Err(damaged(format!(
                "{} layers described, {} stored",
                description.layers.len(),
                chunks.len()
            )));
        }
        description
            .layers
            .into_iter()
            .zip(chunks)
            .enumerate()
            .map(|(i, (d, packed))| {
                let rgba = inflate_exactly(packed, one)
                    .map_err(|m| damaged(format!("layer {}: {m}", i + 1)))?;
                let opacity = if d.props.opacity.is_finite() {
                    d.props.opacity.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let name: String = d
                    .props
                    .name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(120)
                    .collect();
                Ok(Layer {
                    id: LayerId(i as u64 + 1),
                    kind: d.kind,
                    props: LayerProps {
                        name,
                        opacity,
                        visible: d.props.visible,
                        control: (d.kind == LayerKind::Control)
                            .then(|| sanitized_control(d.props.control)),
                    },
                    record: d.record,
                    rgba,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let doc = Document::from_layers(w, h, layers, mask, description.active)
        .ok_or_else(|| damaged("layers that do not fit the image".into()))?;
    Ok(Opened {
        doc,
        settings: description.settings.filter(|s| s.validate().is_ok()),
    })
}

/// A control layer's settings as a file gives them, with every value brought within what a
/// job accepts (a hand-edited or hostile file gives a usable layer, not a failing Generate).
fn sanitized_control(
    c: Option<super::control_layer::ControlSettings>,
) -> super::control_layer::ControlSettings {
    use crate::engine::control::{ControlMode, Preprocessor, MAX_CONTROL_WEIGHT};
    let Some(c) = c else {
        return super::control_layer::ControlSettings::new(Preprocessor::None, None);
    };
    let fraction = |v: f64, default: f64| {
        if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            default
        }
    };
    let (start, end) = (fraction(c.start, 0.0), fraction(c.end, 1.0));
    let (start, end) = if start < end {
        (start, end)
    } else {
        (0.0, 1.0)
    };
    super::control_layer::ControlSettings {
        model: c.model.filter(|p| p.as_os_str().len() <= 4096),
        module: Preprocessor::parse(&c.module).unwrap_or_default().spec(),
        weight: if c.weight.is_finite() {
            c.weight.clamp(0.0, MAX_CONTROL_WEIGHT)
        } else {
            1.0
        },
        start,
        end,
        mode: ControlMode::parse(&c.mode)
            .unwrap_or_default()
            .cli_name()
            .into(),
        enabled: c.enabled,
    }
}

/// `packed` (zlib) inflated, if it makes exactly `len` bytes (never more are made).
fn inflate_exactly(packed: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let data = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(packed, len)
        .map_err(|_| format!("does not decompress to {len} bytes"))?;
    if data.len() != len {
        return Err(format!("{} bytes where {len} belong", data.len()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::brush::{BrushSettings, Tool};

    /// A path in the calling test's own folder: tests run in parallel and share file names.
    fn temp(name: &str) -> std::path::PathBuf {
        // libtest names each test's thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("main")
            .replace("::", "-");
        let d =
            std::env::temp_dir().join(format!("pentimento-docfile-{}-{test}", std::process::id()));
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

    fn layered() -> Document {
        let mut doc = Document::blank(24, 16);
        doc.begin_stroke(
            Tool::ColorBrush([10, 200, 10]),
            BrushSettings::default(),
            (4.0, 4.0),
            1.0,
        );
        doc.end_stroke();
        let paint = doc.add_paint_layer().unwrap();
        doc.begin_stroke(
            Tool::ColorBrush([200, 10, 10]),
            BrushSettings::default(),
            (12.0, 8.0),
            1.0,
        );
        doc.end_stroke();
        doc.set_layer_opacity(paint, 0.4).unwrap();
        let hidden = doc.add_paint_layer().unwrap();
        doc.set_layer_visible(hidden, false).unwrap();
        doc.select_layer(paint).unwrap();
        doc
    }

    #[test]
    fn layers_round_trip_with_names_visibility_opacity_and_the_active_one() {
        let doc = layered();
        let path = temp("layers.pentimento");
        DocumentSnapshot::of(&doc).write(&path).unwrap();
        let back = read(&path).unwrap().doc;
        assert_eq!(back.layers().len(), 3);
        for (a, b) in doc.layers().iter().zip(back.layers()) {
            assert_eq!(a.props, b.props);
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.rgba(), b.rgba());
        }
        assert_eq!(back.active_layer().props.name, "Paint 1");
        assert_eq!(back.rgba(), doc.rgba(), "the same composite");
        // Viewers see the composite.
        let flat = image::load_from_memory(&std::fs::read(&path).unwrap())
            .unwrap()
            .to_rgba8();
        assert_eq!(flat.as_raw(), doc.rgba());
    }

    /// Description and chunks that disagree, lie, or ask for too much are refused, never
    /// trusted.
    #[test]
    fn hostile_layer_descriptions_are_refused() {
        let doc = layered();
        let write = |name: &str, snap: &DocumentSnapshot| {
            let p = temp(name);
            snap.write(&p).unwrap();
            p
        };
        // More layers described than stored.
        let mut snap = DocumentSnapshot::of(&doc);
        snap.layers.push(snap.layers[0].clone());
        let described_4 = {
            // Four descriptions, three chunks: write four, then drop one chunk.
            let p = write("four.pentimento", &snap);
            let b = std::fs::read(&p).unwrap();
            let at = find_nth_chunk(&b, &LAYER_CHUNK, 3).unwrap();
            let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let mut cut = b[..at].to_vec();
            cut.extend_from_slice(&b[at + 12 + len..]);
            std::fs::write(&p, cut).unwrap();
            p
        };
        assert!(matches!(
            read(&described_4),
            Err(DocumentFileError::Damaged(..))
        ));
        // A layer chunk that inflates past one layer's size (a bomb).
        let mut bomb = DocumentSnapshot::of(&doc);
        bomb.layers[1].rgba = vec![7; 24 * 16 * 4 * 100];
        let e = read(&write("bomb.pentimento", &bomb)).err().unwrap();
        assert!(e.to_string().contains("layer 2"), "{e}");
        // Too many layers described.
        let mut many = DocumentSnapshot::of(&doc);
        many.layers = vec![many.layers[0].clone(); MAX_LAYERS + 1];
        assert!(matches!(
            read(&write("many.pentimento", &many)),
            Err(DocumentFileError::Damaged(..))
        ));
        // Non-finite opacity has no JSON form (serde writes null): refused, not guessed.
        let mut odd = DocumentSnapshot::of(&doc);
        odd.layers[0].props.opacity = f32::INFINITY;
        assert!(matches!(
            read(&write("inf.pentimento", &odd)),
            Err(DocumentFileError::Damaged(..))
        ));
        // Control characters in a name, an opacity out of range and a far-out active index
        // come back tamed.
        let mut odd = DocumentSnapshot::of(&doc);
        odd.layers[0].props.opacity = 7.0;
        odd.layers[0].props.name = "a\u{1b}[31mb".into();
        odd.active = 1 << 40;
        let back = read(&write("odd.pentimento", &odd)).unwrap().doc;
        assert_eq!(back.layers()[0].props.name, "a[31mb");
        assert_eq!(back.layers()[0].props.opacity, 1.0);
        assert_eq!(back.active_layer().id, back.layers()[2].id);
    }

    fn find_nth_chunk(bytes: &[u8], kind: &[u8; 4], n: usize) -> Option<usize> {
        let mut pos = 8;
        let mut seen = 0;
        while pos + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().ok()?) as usize;
            if &bytes[pos + 4..pos + 8] == kind {
                if seen == n {
                    return Some(pos);
                }
                seen += 1;
            }
            pos += 12 + len;
        }
        None
    }
}
