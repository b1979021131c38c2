//! `pentimento info FILE`: the generation parameters an image carries — PNG, JPEG or WebP, from
//! Pentimento, AUTOMATIC1111/Forge, InvokeAI, ComfyUI, NovelAI or Fooocus — (and a document's
//! layers).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pentimento::png_info::{a1111, parse_image};

#[derive(Args, Debug)]
pub struct InfoArgs {
    pub file: PathBuf,
    /// Print JSON: the tool, prompt, negative prompt and every field (and our full record).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let bytes = pentimento::png_info::read_png_file(&args.file)
        .with_context(|| format!("{}: cannot read", args.file.display()))?;
    use pentimento::png_info::exif;
    let is_png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    if !(is_png || exif::is_jpeg(&bytes) || exif::is_webp(&bytes)) {
        bail!("{}: not a PNG, JPEG or WebP file", args.file.display());
    }
    if let Some(doc) = pentimento::document::file::summary(&bytes) {
        return document(&args, &doc);
    }
    let Some(info) = parse_image(&bytes) else {
        bail!(
            "{}: the image carries no generation parameters",
            args.file.display()
        );
    };
    let carried = info.apply_to(&pentimento::engine::GenerationParams::default());
    let notes = info.not_carried_over(&carried);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary(&info, &carried, &notes)?)?
        );
    } else {
        eprintln!("written by: {:?} ({:?})", info.tool, info.carrier);
        for note in &notes {
            eprintln!("not carried over: {}", super::terminal_safe(note, true));
        }
        println!(
            "{}",
            super::terminal_safe(&a1111::format(&info.parameters), false)
        );
        if let Some(sweep) = info.record.as_ref().and_then(|r| r.sweep.as_ref()) {
            let axes: Vec<String> = [("x", &sweep.x), ("y", &sweep.y)]
                .into_iter()
                .filter_map(|(name, a)| a.as_ref().map(|a| format!("{name}: {a}")))
                .collect();
            println!(
                "Grid (parameters above are the first cell's): {}",
                super::terminal_safe(&axes.join("; "), true)
            );
        }
    }
    Ok(())
}

/// `info --json`: the tool and where it kept them, the fields every tool has under common names
/// (the sampler as ours and as the tool named it), what would not carry over, then the tool's
/// fields verbatim (`parameters`) and our record.
fn summary(
    info: &pentimento::png_info::PngInfo,
    carried: &pentimento::engine::GenerationParams,
    notes: &[String],
) -> anyhow::Result<serde_json::Value> {
    let p = &info.parameters;
    let number = |k: &str| p.get(k).and_then(|v| v.trim().parse::<f64>().ok());
    let size = p.get("Size").and_then(|s| s.split_once('x'));
    let dim = |v: Option<&str>| v.and_then(|v| v.trim().parse::<u64>().ok());
    let mut out = serde_json::json!({
        "tool": info.tool,
        "carrier": info.carrier,
        "prompt": p.prompt,
        "negative_prompt": p.negative_prompt,
        "seed": p.get("Seed").and_then(|v| v.trim().parse::<u64>().ok()),
        "steps": number("Steps"),
        "sampler": info.sampler().map(|k| k.name()),
        "tool_sampler": p.get("Sampler"),
        "tool_schedule": p.get("Schedule type"),
        "cfg_scale": number("CFG scale"),
        "width": dim(size.map(|s| s.0)),
        "height": dim(size.map(|s| s.1)),
        "model": p.get("Model"),
        "model_hash": p.get("Model hash"),
        "controlnets": info.controls(),
        "not_carried_over": notes,
        "runs_as": {
            "sampler": carried.sampler, "steps": carried.steps, "seed": carried.seed,
            "cfg_scale": carried.cfg_scale, "width": carried.width, "height": carried.height,
        },
    });
    let full = serde_json::to_value(info)?;
    for key in ["parameters", "record"] {
        out[key] = full[key].clone();
    }
    Ok(out)
}

/// A `.pentimento` document: the picture's parameters (its topmost visible result's) and the
/// layers, bottom first.
fn document(args: &InfoArgs, doc: &pentimento::document::file::Summary) -> anyhow::Result<()> {
    if args.json {
        let layers: Vec<serde_json::Value> = doc
            .layers
            .iter()
            .map(|(kind, name, visible, opacity, seed)| {
                serde_json::json!({
                    "kind": kind, "name": name, "visible": visible, "opacity": opacity,
                    "seed": seed,
                })
            })
            .collect();
        let out = serde_json::json!({
            "tool": "pentimento-document", "version": doc.version,
            "record": doc.record, "layers": layers,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    eprintln!("a Pentimento document (version {})", doc.version);
    match &doc.record {
        Some(r) => println!(
            "{}",
            super::terminal_safe(&a1111::format(&r.parameters()), false)
        ),
        None => println!("(nothing generated what is visible)"),
    }
    println!("Layers, bottom first:");
    for (kind, name, visible, opacity, seed) in &doc.layers {
        let mut line = format!("  {kind:?} \"{}\"", super::terminal_safe(name, true));
        if !visible {
            line.push_str(", hidden");
        }
        if *opacity < 1.0 {
            line.push_str(&format!(", {:.0} %", opacity * 100.0));
        }
        if let Some(seed) = seed {
            line.push_str(&format!(", seed {seed}"));
        }
        println!("{line}");
    }
    Ok(())
}
