//! `pentimento info FILE.png`: the generation parameters a PNG carries (and a document's layers).

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
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        bail!("{}: not a PNG file", args.file.display());
    }
    if let Some(doc) = pentimento::document::file::summary(&bytes) {
        return document(&args, &doc);
    }
    let Some(info) = parse_image(&bytes) else {
        bail!(
            "{}: the PNG carries no generation parameters",
            args.file.display()
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        eprintln!("written by: {:?}", info.tool);
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
