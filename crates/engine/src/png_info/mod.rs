//! Generation parameters in images: written in AUTOMATIC1111's `parameters` format (which
//! AUTOMATIC1111's PNG Info, Forge, Civitai and Krita read) plus, in PNGs, our complete record as
//! JSON under `pentimento`; in JPEG and WebP as AUTOMATIC1111 writes them (EXIF `UserComment`).
//! Read back from Pentimento, AUTOMATIC1111, Forge, Krita AI Diffusion, InvokeAI (every format),
//! ComfyUI, NovelAI and Fooocus images, PNG text, EXIF or the alpha channel's hidden bits.

pub mod a1111;
mod chunks;
pub mod controlnet;
pub use chunks::{find_chunk, find_chunks};
pub mod exif;
pub mod other_tools;
pub mod samplers;
pub mod stealth;

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use a1111::Parameters;
pub use chunks::{read_text_chunks, TextChunk};

use crate::image::RgbImage;
use crate::inpaint::{InpaintArea, InpaintOptions};
use crate::job::Job;
use crate::mask::Mask;
use crate::model::ModelInfo;
use crate::params::GenerationParams;
use crate::sampler::SamplerKind;

pub const VERSION: &str = concat!("pentimento ", env!("CARGO_PKG_VERSION"));

/// Inpainting settings of a job, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InpaintRecord {
    pub mask_blur: usize,
    pub repaint_resample: usize,
    pub repaint_jump: usize,
    /// "whole" or "masked".
    pub area: String,
    pub padding: usize,
    pub masked_content: String,
    /// SHA-256 of the mask's 8-bit grey levels.
    pub mask_sha256: Option<String>,
}

/// The prediction type a model was run with, and what decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// "epsilon" or "v".
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
}

impl InpaintRecord {
    fn new(options: &InpaintOptions, mask_sha256: Option<String>) -> Self {
        let (area, padding) = match options.area {
            InpaintArea::Whole => ("whole", 0),
            InpaintArea::Masked { padding } => ("masked", padding),
        };
        Self {
            mask_blur: options.mask_blur,
            repaint_resample: options.resampling.resample,
            repaint_jump: options.resampling.jump,
            area: area.into(),
            padding,
            masked_content: options.masked_content.name().into(),
            mask_sha256,
        }
    }
}

/// AUTOMATIC1111 names a model by its file's stem; a diffusers folder by its name (all of it:
/// `sd-2.1` stays `sd-2.1`).
pub fn model_name(path: &Path) -> Option<String> {
    let name = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SHA-256 of an image's RGB bytes: the same for the same pixels whatever file (or
/// canvas) they came from.
pub fn image_sha256(image: &RgbImage) -> String {
    sha256_hex(&image.pixels)
}

/// The SHA-256 of a mask's 8-bit grey levels.
pub fn mask_sha256(mask: &Mask) -> String {
    let grey: Vec<u8> = mask
        .values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    sha256_hex(&grey)
}

/// Everything about how an image was made: our own complete record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub version: String,
    /// "txt2img", "img2img", "inpaint" or "outpaint".
    pub kind: String,
    pub params: GenerationParams,
    pub model: Option<String>,
    pub model_hash: Option<String>,
    pub vae: Option<String>,
    pub inpaint: Option<InpaintRecord>,
    /// The model's prediction type and what decided it (config, marker, test forward, option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<PredictionRecord>,
    /// SHA-256 of the source image's RGB bytes.
    pub source_image_sha256: Option<String>,
    /// For a grid: the axes swept; `params` are the first cell's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<crate::sweep::Sweep>,
    /// The LoRAs the job applied (from the prompt's tags and `--lora`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRecord>,
    /// The textual-inversion embeddings its prompts used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeddings: Vec<EmbeddingRecord>,
    /// The ControlNet units that steered it (their condition images are not recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<controlnet::ControlRecord>,
}

/// An embedding as a record names it: the word (its file's stem) and AUTOMATIC1111's short hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRecord {
    pub name: String,
    #[serde(default)]
    pub hash: Option<String>,
}

/// A LoRA as a record names it: the file's stem (what `<lora:NAME:W>` finds), its weight and
/// AUTOMATIC1111's short hash of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraRecord {
    pub name: String,
    pub weight: f32,
    /// The UNet's own weight (`<lora:NAME:TE:UNET>`), when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet_weight: Option<f32>,
    #[serde(default)]
    pub hash: Option<String>,
}

impl LoraRecord {
    pub fn of(lora: &crate::model::adapters::LoraRef) -> Self {
        Self {
            name: lora
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            weight: lora.weight,
            unet_weight: lora.unet_weight,
            hash: crate::model::adapters::hash::short_hash(&lora.path),
        }
    }
}

/// AUTOMATIC1111's `name: hash, …` list (quoted when written, as it has commas).
fn hash_list<'a>(items: impl Iterator<Item = (&'a String, &'a Option<String>)>) -> String {
    items
        .map(|(name, hash)| format!("{name}: {}", hash.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A display number: `7` rather than `7.0`, `7.5` as is.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl ImageRecord {
    /// What the PNGs of `job`'s images made by `model` record, with image 0's parameters
    /// (`with_params` gives each other image's): the one place that decides it, for the CLI,
    /// the worker and the app's Save alike.
    pub fn for_job(job: &Job, model: &ModelInfo) -> crate::Result<Self> {
        let canvas = job.kind.canvas_and_mask()?;
        Ok(Self::for_job_with_mask(
            job,
            model,
            canvas.as_ref().map(|(_, m)| m.as_ref()),
        ))
    }

    /// `for_job` with the mask inpainting works on already made (outpainting's is built from
    /// the margins; `StableDiffusion::run` builds it once for the record and the job).
    pub fn for_job_with_mask(job: &Job, model: &ModelInfo, mask: Option<&Mask>) -> Self {
        Self {
            model: model_name(&model.path),
            model_hash: model.hash.clone(),
            vae: model
                .vae
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            prediction: Some(PredictionRecord {
                kind: model.prediction.to_string(),
                source: model.prediction_source.to_string(),
            }),
            ..Self::of_job(job, mask)
        }
    }

    /// The record of `job` made by a server that writes none of ours (AUTOMATIC1111, Forge):
    /// its model as the server names it; what only the loaded model knows (its VAE, its
    /// prediction type) is not claimed.
    pub fn for_job_elsewhere(job: &Job, model: Option<String>, model_hash: Option<String>) -> Self {
        let canvas = job.kind.canvas_and_mask().ok().flatten();
        Self {
            model,
            model_hash,
            ..Self::of_job(job, canvas.as_ref().map(|(_, m)| m.as_ref()))
        }
    }

    /// What the job alone decides, whatever model made it.
    fn of_job(job: &Job, mask: Option<&Mask>) -> Self {
        let inpaint = job
            .kind
            .inpaint_options()
            .map(|options| InpaintRecord::new(options, mask.map(mask_sha256)));
        Self {
            version: VERSION.into(),
            kind: job.kind.name().into(),
            params: job.image_params(0),
            model: None,
            model_hash: None,
            vae: None,
            inpaint,
            prediction: None,
            source_image_sha256: job.kind.source_image().map(image_sha256),
            sweep: None,
            loras: job.loras.iter().map(LoraRecord::of).collect(),
            embeddings: job
                .embeddings
                .iter()
                .map(|e| EmbeddingRecord {
                    name: e.name.clone(),
                    hash: crate::model::adapters::hash::whole_file_short_hash(&e.path),
                })
                .collect(),
            controls: job
                .controls
                .iter()
                .map(controlnet::ControlRecord::of)
                .collect(),
        }
    }

    /// The same record for another image of the job (another seed) or a grid cell.
    pub fn with_params(&self, params: GenerationParams) -> Self {
        Self {
            params,
            ..self.clone()
        }
    }

    /// The AUTOMATIC1111 text for this record, fields in AUTOMATIC1111's order.
    pub fn parameters(&self) -> Parameters {
        let p = &self.params;
        let mut fields: Vec<(String, String)> = vec![("Steps".into(), p.steps.to_string())];
        match SamplerKind::from_name(&p.sampler) {
            Some(kind) if kind.karras => {
                fields.push((
                    "Sampler".into(),
                    SamplerKind {
                        karras: false,
                        ..kind
                    }
                    .name(),
                ));
                fields.push(("Schedule type".into(), "Karras".into()));
            }
            Some(kind) => fields.push(("Sampler".into(), kind.name())),
            None => fields.push(("Sampler".into(), p.sampler.clone())),
        }
        fields.push(("CFG scale".into(), number(p.cfg_scale)));
        fields.push(("Seed".into(), p.seed.to_string()));
        fields.push(("Size".into(), format!("{}x{}", p.width, p.height)));
        if let Some(h) = &self.model_hash {
            fields.push(("Model hash".into(), h.clone()));
        }
        if let Some(m) = &self.model {
            fields.push(("Model".into(), m.clone()));
        }
        if let Some(v) = &self.vae {
            fields.push(("VAE".into(), v.clone()));
        }
        if let Some(p) = &self.prediction {
            fields.push(("Prediction".into(), format!("{} ({})", p.kind, p.source)));
        }
        if self.kind != "txt2img" {
            fields.push(("Denoising strength".into(), number(p.strength)));
        }
        if p.clip_skip > 1 {
            fields.push(("Clip skip".into(), p.clip_skip.to_string()));
        }
        if let Some(inpaint) = &self.inpaint {
            fields.push(("Mask blur".into(), inpaint.mask_blur.to_string()));
        }
        if let Some(vs) = p.variation_seed {
            fields.push(("Variation seed".into(), vs.to_string()));
            fields.push((
                "Variation seed strength".into(),
                number(p.variation_strength),
            ));
        }
        if p.eta > 0.0 {
            fields.push(("Eta".into(), number(p.eta)));
        }
        if let Some(spacing) = p.timestep_spacing {
            fields.push(("Timestep spacing".into(), spacing.name().into()));
        }
        if !self.loras.is_empty() {
            let hashes = self.loras.iter().map(|l| (&l.name, &l.hash));
            fields.push(("Lora hashes".into(), hash_list(hashes)));
        }
        if !self.embeddings.is_empty() {
            let hashes = self.embeddings.iter().map(|e| (&e.name, &e.hash));
            fields.push(("TI hashes".into(), hash_list(hashes)));
        }
        for (i, c) in self.controls.iter().enumerate() {
            fields.push((format!("ControlNet {i}"), c.a1111_value()));
        }
        fields.push(("Version".into(), self.version.clone()));
        Parameters {
            prompt: p.prompt.clone(),
            negative_prompt: p.negative_prompt.clone(),
            fields,
        }
    }
}

fn is_latin1(s: &str) -> bool {
    s.chars().all(|c| (c as u32) < 256)
}

/// Writes an 8-bit RGB PNG with the record's parameters: `parameters` as tEXt when the text is
/// Latin-1 and iTXt (UTF-8) otherwise, `pentimento` as iTXt JSON. Written atomically: a
/// failure or a kill leaves any previous file at `path` intact.
pub fn write_png(path: &Path, image: &RgbImage, record: &ImageRecord) -> std::io::Result<()> {
    crate::atomic_file::write_with(path, |out| encode_png(out, image, record))
}

/// The PNG [`write_png`] writes, in memory.
pub fn png_bytes(image: &RgbImage, record: &ImageRecord) -> std::io::Result<Vec<u8>> {
    let mut out = vec![];
    encode_png(&mut out, image, record)?;
    Ok(out)
}

fn encode_png(
    out: &mut impl std::io::Write,
    image: &RgbImage,
    record: &ImageRecord,
) -> std::io::Result<()> {
    let to_io = |e: png::EncodingError| std::io::Error::other(e.to_string());
    let mut enc = png::Encoder::new(out, image.width as u32, image.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let text = a1111::format(&record.parameters());
    if is_latin1(&text) {
        enc.add_text_chunk("parameters".into(), text)
            .map_err(to_io)?;
    } else {
        enc.add_itxt_chunk("parameters".into(), text)
            .map_err(to_io)?;
    }
    let json = serde_json::to_string(record).map_err(std::io::Error::other)?;
    enc.add_itxt_chunk("pentimento".into(), json)
        .map_err(to_io)?;
    let mut writer = enc.write_header().map_err(to_io)?;
    writer.write_image_data(&image.pixels).map_err(to_io)?;
    writer.finish().map_err(to_io)
}

/// The image file types results are saved as, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Our record and AUTOMATIC1111's text, lossless.
    Png,
    /// AUTOMATIC1111's text in EXIF, quality 95.
    Jpeg,
    /// AUTOMATIC1111's text in EXIF, lossless.
    Webp,
}

impl ImageFormat {
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// JPEG quality of saved results (AUTOMATIC1111's default is 80; ours keeps more detail).
pub const JPEG_QUALITY: u8 = 95;

/// Writes `image` with its parameters in the format `path`'s extension names (PNG when it
/// names none we write): PNG as [`write_png`]; JPEG and WebP with AUTOMATIC1111's text in EXIF,
/// as AUTOMATIC1111 saves them (our full record does not fit there).
pub fn write_image(path: &Path, image: &RgbImage, record: &ImageRecord) -> std::io::Result<()> {
    let format = ImageFormat::of(path).unwrap_or(ImageFormat::Png);
    if format == ImageFormat::Png {
        return write_png(path, image, record);
    }
    let bytes = encode_with_exif(image, &a1111::format(&record.parameters()), format)?;
    crate::atomic_file::write_with(path, |out| out.write_all(&bytes))
}

/// `image` encoded as JPEG or WebP with `text` in its EXIF.
pub fn encode_with_exif(
    image: &RgbImage,
    text: &str,
    format: ImageFormat,
) -> std::io::Result<Vec<u8>> {
    let (w, h) = (image.width as u32, image.height as u32);
    let mut encoded = vec![];
    let to_io = |e: ::image::ImageError| std::io::Error::other(e.to_string());
    match format {
        ImageFormat::Jpeg => {
            ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, JPEG_QUALITY)
                .encode(&image.pixels, w, h, ::image::ExtendedColorType::Rgb8)
                .map_err(to_io)?;
            exif::jpeg_with_text(&encoded, text)
        }
        ImageFormat::Webp => {
            ::image::codecs::webp::WebPEncoder::new_lossless(&mut encoded)
                .encode(&image.pixels, w, h, ::image::ExtendedColorType::Rgb8)
                .map_err(to_io)?;
            exif::webp_with_text(&encoded, image.width, image.height, text)
        }
        ImageFormat::Png => Err(std::io::Error::other("PNG goes through write_png")),
    }
}

/// Which tool wrote the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tool {
    Pentimento,
    /// AUTOMATIC1111, Forge, Krita AI Diffusion and others writing its format.
    Automatic1111,
    /// InvokeAI: `invokeai_metadata` (3+), `sd-metadata` (2) or `Dream` (1).
    InvokeAi,
    ComfyUi,
    NovelAi,
    Fooocus,
}

/// Where in the file the parameters were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Carrier {
    /// PNG text chunks.
    PngText,
    /// EXIF `UserComment` (JPEG, WebP).
    Exif,
    /// The lowest bits of the pixels (`stealth_pnginfo`).
    HiddenBits,
}

#[derive(Debug, Clone, Serialize)]
pub struct PngInfo {
    pub tool: Tool,
    pub carrier: Carrier,
    pub parameters: Parameters,
    /// Our own record, for PNGs Pentimento wrote.
    pub record: Option<ImageRecord>,
}

impl Serialize for Parameters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len() + 2))?;
        map.serialize_entry("prompt", &self.prompt)?;
        map.serialize_entry("negative_prompt", &self.negative_prompt)?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The generation parameters of a PNG's bytes, or `None` when it carries none we know.
/// The largest file read to look for parameters: beyond any real PNG's size, and a bound on
/// what pointing `info` at a device (`/dev/zero`) or a huge file costs.
pub const MAX_PNG_FILE_BYTES: u64 = 512 << 20;

/// The bytes of the file at `path` for [`parse_image`]: regular files only, at most
/// [`MAX_PNG_FILE_BYTES`].
pub fn read_png_file(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::regular_file::read(path, MAX_PNG_FILE_BYTES)
}

/// The generation parameters an image's bytes carry (PNG, JPEG or WebP), or `None` when it
/// carries none we know.
pub fn parse_image(bytes: &[u8]) -> Option<PngInfo> {
    if chunks::is_png(bytes) {
        return from_png_texts(&read_text_chunks(bytes), Carrier::PngText)
            .or_else(|| hidden_bits(bytes));
    }
    if exif::is_jpeg(bytes) || exif::is_webp(bytes) {
        if let Some(text) = exif::text(bytes) {
            return from_text(&text, Carrier::Exif);
        }
        if exif::is_webp(bytes) {
            return hidden_bits(bytes);
        }
    }
    None
}

fn info(tool: Tool, carrier: Carrier, parameters: Parameters) -> PngInfo {
    PngInfo {
        tool,
        carrier,
        parameters,
        record: None,
    }
}

/// The parameters of a PNG's text chunks, each tool's keys in turn.
fn from_png_texts(texts: &[TextChunk], carrier: Carrier) -> Option<PngInfo> {
    let find = |key: &str| {
        texts
            .iter()
            .find(|t| t.keyword == key)
            .map(|t| t.text.as_str())
    };
    let record = find("pentimento").and_then(|j| serde_json::from_str::<ImageRecord>(j).ok());
    if let Some(record) = record {
        return Some(PngInfo {
            tool: Tool::Pentimento,
            carrier,
            parameters: record.parameters(),
            record: Some(record),
        });
    }
    if let Some(text) = find("parameters") {
        let fooocus_a1111 = find("fooocus_scheme").is_some_and(|s| s.trim() == "a1111");
        return from_text(text, carrier).map(|mut i| {
            if fooocus_a1111 {
                i.tool = Tool::Fooocus;
            }
            i
        });
    }
    if let Some(p) = find("invokeai_metadata").and_then(other_tools::invokeai) {
        return Some(info(Tool::InvokeAi, carrier, p));
    }
    if let Some(p) = find("sd-metadata").and_then(other_tools::invokeai_sd_metadata) {
        return Some(info(Tool::InvokeAi, carrier, p));
    }
    if let Some(p) = find("Dream").and_then(other_tools::invokeai_dream) {
        return Some(info(Tool::InvokeAi, carrier, p));
    }
    if let Some(comment) = find("Comment") {
        if let Some(p) = other_tools::novelai(comment, find("Description"), find("Source")) {
            return Some(info(Tool::NovelAi, carrier, p));
        }
    }
    if let Some(p) = find("prompt").and_then(other_tools::comfyui) {
        return Some(info(Tool::ComfyUi, carrier, p));
    }
    None
}

/// One text holding the parameters (a `parameters` chunk, an EXIF comment, hidden bits):
/// AUTOMATIC1111's text, or JSON — Fooocus's, or NovelAI's chunks as one object.
fn from_text(text: &str, carrier: Carrier) -> Option<PngInfo> {
    if text.trim_start().starts_with('{') {
        if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(text) {
            // NovelAI's hidden metadata: its PNG chunks as one object.
            let field = |k: &str| obj.get(k).and_then(|v| v.as_str());
            if let Some(comment) = field("Comment") {
                let p = other_tools::novelai(comment, field("Description"), field("Source"));
                return p.map(|p| info(Tool::NovelAi, carrier, p));
            }
            if let Some(p) = other_tools::fooocus(text) {
                return Some(info(Tool::Fooocus, carrier, p));
            }
        }
    }
    Some(info(Tool::Automatic1111, carrier, a1111::parse(text)))
}

/// Parameters hidden in the pixels (only looked for when the file has no text): the image is
/// decoded within the usual limits.
fn hidden_bits(bytes: &[u8]) -> Option<PngInfo> {
    let decoded = crate::image::decode_bytes(bytes).ok()?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let text = if decoded.color().has_alpha() {
        stealth::read(decoded.to_rgba8().as_raw(), w, h, true)
    } else {
        stealth::read(decoded.to_rgb8().as_raw(), w, h, false)
    }?;
    from_text(&text, Carrier::HiddenBits)
}

impl PngInfo {
    /// Our sampler for the tool's sampler (and schedule), if we have one.
    pub fn sampler(&self) -> Option<SamplerKind> {
        let p = &self.parameters;
        samplers::ours(p.get("Sampler")?, p.get("Schedule type"))
    }

    /// What running these parameters again here cannot carry over, one line each: a sampler
    /// we lack (the one given instead), hires fix, a refiner, ControlNet units.
    pub fn not_carried_over(&self, used: &GenerationParams) -> Vec<String> {
        let controls = self.controls();
        let control_note = (!controls.is_empty()).then(|| {
            let names: Vec<String> = controls
                .iter()
                .map(|c| format!("{} ({})", c.model, c.module))
                .collect();
            format!(
                "ControlNet {}: not applied (the PNG does not hold their condition images; give --control again)",
                names.join(", ")
            )
        });
        if self.record.is_some() {
            return control_note.into_iter().collect();
        }
        let p = &self.parameters;
        let mut notes = vec![];
        if let Some(theirs) = p.get("Sampler") {
            if self.sampler().is_none() {
                let schedule = p
                    .get("Schedule type")
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                notes.push(format!(
                    "sampler {theirs}{schedule}: not one Pentimento has; {} instead",
                    used.sampler
                ));
            }
        }
        let hires = p
            .fields
            .iter()
            .find(|(k, _)| k.starts_with("Hires upscale"));
        if let Some((_, v)) = hires {
            notes.push(format!(
                "hires fix (upscale {v}): not done; the image is made at its first-pass size"
            ));
        }
        if let Some(r) = p.get("Refiner") {
            notes.push(format!("refiner {r}: not used"));
        }
        notes.extend(control_note);
        notes
    }

    /// The ControlNet units the image records: ours, or AUTOMATIC1111's extension's fields.
    pub fn controls(&self) -> Vec<controlnet::ControlRecord> {
        match &self.record {
            Some(r) => r.controls.clone(),
            None => controlnet::from_fields(&self.parameters.fields),
        }
    }

    /// These parameters over `base`: what `--params-from` reruns. Fields that are missing or
    /// unreadable keep `base`'s value.
    pub fn apply_to(&self, base: &GenerationParams) -> GenerationParams {
        if let Some(r) = &self.record {
            return r.params.clone();
        }
        let p = &self.parameters;
        let mut out = base.clone();
        out.prompt = p.prompt.clone();
        out.negative_prompt = p.negative_prompt.clone();
        let num = |k: &str| p.get(k).and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(v) = num("Steps") {
            out.steps = v as usize;
        }
        if let Some(v) = num("CFG scale") {
            out.cfg_scale = v;
        }
        if let Some(v) = p.get("Seed").and_then(|v| v.trim().parse::<u64>().ok()) {
            out.seed = v;
        }
        if let Some((w, h)) = p.get("Size").and_then(|s| s.split_once('x')) {
            if let (Ok(w), Ok(h)) = (w.trim().parse(), h.trim().parse()) {
                out.width = w;
                out.height = h;
            }
        }
        if let Some(kind) = self.sampler() {
            out.sampler = kind.name();
        }
        if let Some(v) = num("Denoising strength") {
            out.strength = v;
        }
        // We write DDIM's η and TCD's γ as "Eta"; AUTOMATIC1111 writes DDIM's as "Eta DDIM".
        if let Some(v) = num("Eta").or_else(|| num("Eta DDIM")) {
            out.eta = v;
        }
        if let Some(v) = p.get("Timestep spacing") {
            out.timestep_spacing = crate::sampler::schedule::TimestepSpacing::from_name(v.trim());
        }
        if let Some(v) = num("Clip skip") {
            out.clip_skip = v as usize;
        }
        if let Some(v) = p
            .get("Variation seed")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            out.variation_seed = Some(v);
            out.variation_strength = num("Variation seed strength").unwrap_or(0.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(prompt: &str) -> ImageRecord {
        ImageRecord {
            version: VERSION.into(),
            kind: "inpaint".into(),
            params: GenerationParams {
                prompt: prompt.into(),
                negative_prompt: "blurry, \"quoted\"".into(),
                seed: 4_000_000_000,
                steps: 25,
                cfg_scale: 6.5,
                sampler: "DPM++ 2M Karras".into(),
                width: 640,
                height: 448,
                clip_skip: 2,
                strength: 0.6,
                variation_seed: Some(9),
                variation_strength: 0.25,
                ..Default::default()
            },
            model: Some("my, model: v2".into()),
            model_hash: Some("0123456789".into()),
            vae: Some("final-pruned.vae.pt".into()),
            inpaint: Some(InpaintRecord {
                mask_blur: 4,
                repaint_resample: 2,
                repaint_jump: 1,
                area: "masked".into(),
                padding: 32,
                masked_content: "fill".into(),
                mask_sha256: Some("ab".into()),
            }),
            prediction: Some(PredictionRecord {
                kind: "v".into(),
                source: "test forward of the UNet".into(),
            }),
            source_image_sha256: Some("cd".into()),
            sweep: None,
            loras: vec![],
            embeddings: vec![],
            controls: vec![],
        }
    }

    fn roundtrip(prompt: &str) -> (Vec<u8>, PngInfo) {
        let dir = std::env::temp_dir().join(format!(
            "pentimento-png-{}-{}",
            std::process::id(),
            prompt.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.png");
        let image = RgbImage::new(3, 2, (0..18).collect()).unwrap();
        write_png(&path, &image, &record(prompt)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let info = parse_image(&bytes).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(decoded.into_raw(), image.pixels);
        (bytes, info)
    }

    #[test]
    fn every_field_round_trips_in_latin1_and_utf8() {
        for prompt in [
            "a castle, (masterpiece:1.2)\nsecond line, café",
            "猫の写真, ünïcödé ✨",
        ] {
            let (bytes, info) = roundtrip(prompt);
            assert_eq!(info.tool, Tool::Pentimento);
            assert_eq!(info.record.as_ref().unwrap(), &record(prompt));
            // The AUTOMATIC1111 text alone reads back the same fields.
            let texts = read_text_chunks(&bytes);
            let params = texts.iter().find(|t| t.keyword == "parameters").unwrap();
            let a1111 = PngInfo {
                tool: Tool::Automatic1111,
                carrier: Carrier::PngText,
                parameters: a1111::parse(&params.text),
                record: None,
            };
            let back = a1111.apply_to(&GenerationParams::default());
            let want = &record(prompt).params;
            assert_eq!(back.prompt, want.prompt);
            assert_eq!(back.negative_prompt, want.negative_prompt);
            assert_eq!(
                (back.seed, back.steps, back.cfg_scale),
                (want.seed, want.steps, want.cfg_scale)
            );
            assert_eq!(
                (back.width, back.height, back.sampler.as_str()),
                (want.width, want.height, "DPM++ 2M Karras")
            );
            assert_eq!(
                (back.strength, back.clip_skip),
                (want.strength, want.clip_skip)
            );
            assert_eq!(
                (back.variation_seed, back.variation_strength),
                (want.variation_seed, want.variation_strength)
            );
            assert_eq!(a1111.parameters.get("Model"), Some("my, model: v2"));
            assert_eq!(a1111.parameters.get("Mask blur"), Some("4"));
            // tEXt for Latin-1 text, iTXt otherwise.
            let latin1 = prompt.chars().all(|c| (c as u32) < 256);
            let marker: &[u8] = if latin1 {
                b"tEXtparameters"
            } else {
                b"iTXtparameters"
            };
            assert!(bytes.windows(marker.len()).any(|w| w == marker));
        }
    }
}
