//! `pentimento info FILE.png`: the generation parameters a PNG carries.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pentimento::png_info::{a1111, parse_png};

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
    let Some(info) = parse_png(&bytes) else {
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
