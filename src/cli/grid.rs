//! `pentimento grid`: one labelled PNG of a sweep over seeds, CFG, steps, samplers, … with the
//! same options as `generate`.

use super::sheet::Sheet;
use anyhow::{bail, Context};
use clap::Args;
use pentimento::engine::Job;
use pentimento::png_info::write_image;
use pentimento::sweep::{Axis, Field, Sweep};

use super::generate::{GenerateArgs, Plan, Session};

#[derive(Args, Debug)]
pub struct GridArgs {
    #[command(flatten)]
    pub generate: GenerateArgs,
    /// Seeds to compare: `1-8`, `3,7,11` or `10-40 (+10)`. Alone they wrap into a square-ish
    /// grid; with --x (or --y) they take the other axis.
    #[arg(long, value_name = "SEEDS")]
    pub seeds: Option<String>,
    /// Columns: NAME=V1,V2,… with NAME one of seed, steps, cfg, sampler, strength, clip-skip,
    /// eta, variation-seed, variation-strength, prompt-sr.
    #[arg(long, value_name = "NAME=V1,V2,…")]
    pub x: Option<String>,
    /// Rows, as --x.
    #[arg(long, value_name = "NAME=V1,V2,…")]
    pub y: Option<String>,
}

/// How the cells are arranged and captioned.
struct Layout {
    sweep: Sweep,
    /// A lone axis wraps over several rows with a caption on every cell.
    wrapped: bool,
}

fn layout(args: &GridArgs) -> anyhow::Result<Layout> {
    let x = args.x.as_deref().map(Axis::parse).transpose()?;
    let y = args.y.as_deref().map(Axis::parse).transpose()?;
    let seeds = args
        .seeds
        .as_deref()
        .map(|s| Axis::from_list(Field::Seed, s))
        .transpose()?;
    let (sweep, wrapped) = match (x, y, seeds) {
        (None, None, None) => bail!("say what to sweep: --seeds, --x or --y"),
        (Some(_), Some(_), Some(_)) => {
            bail!("--seeds needs a free axis: with both --x and --y, put seed=… on one of them")
        }
        (None, None, Some(s)) => (
            Sweep {
                x: Some(s),
                y: None,
            },
            true,
        ),
        (x, None, Some(s)) => (Sweep { x, y: Some(s) }, false),
        (None, y, Some(s)) => (Sweep { x: Some(s), y }, false),
        (x, y, None) => (Sweep { x, y }, false),
    };
    Ok(Layout { sweep, wrapped })
}

pub fn run(args: GridArgs) -> anyhow::Result<()> {
    if args.generate.batch_count != 1 || args.generate.batch_size != 1 {
        bail!("a grid runs one image per cell: leave out --batch-count and --batch-size");
    }
    let layout = layout(&args)?;
    let plan = Plan::from_args(&args.generate)?;
    let cells = layout.sweep.cells(&plan.job.params)?;
    for (i, cell) in cells.iter().enumerate() {
        cell.validate()
            .with_context(|| format!("cell {} of the grid", i + 1))?;
    }
    let session = Session::load(&args.generate, &plan)?;

    let captions = cell_captions(&layout.sweep, cells.len());
    let mut images = Vec::with_capacity(cells.len());
    let mut first_record = None;
    for (i, (cell, caption)) in cells.iter().zip(&captions).enumerate() {
        eprintln!("cell {}/{}: {caption}", i + 1, cells.len());
        let job = Job {
            params: cell.clone(),
            ..plan.job.clone()
        };
        let result = session
            .run(&job)?
            .pop()
            .context("the job produced no image")?;
        first_record.get_or_insert(result.record);
        images.push(result.image);
    }

    let sheet = if layout.wrapped {
        Sheet {
            images: &images,
            columns: (images.len() as f64).sqrt().ceil() as usize,
            column_labels: None,
            row_labels: None,
            cell_labels: Some(captions),
        }
    } else {
        Sheet {
            images: &images,
            columns: layout.sweep.columns(),
            column_labels: layout.sweep.column_labels(),
            row_labels: layout.sweep.row_labels(),
            cell_labels: None,
        }
    };
    let grid = sheet.render().map_err(anyhow::Error::msg)?;
    let mut record = first_record.context("the grid has no cells")?;
    record.sweep = Some(layout.sweep);
    let out = &plan.out;
    // PNG, or JPEG/WebP by the extension, as `generate` writes.
    write_image(out, &grid, &record).with_context(|| format!("{}: cannot write", out.display()))?;
    eprintln!(
        "wrote {} ({} images, {}x{}) in {:.1}s",
        out.display(),
        images.len(),
        grid.width,
        grid.height,
        session.elapsed()
    );
    Ok(())
}

/// "CFG Scale: 3, Sampler: DDIM" for each cell, row by row.
fn cell_captions(sweep: &Sweep, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (r, c) = (i / sweep.columns(), i % sweep.columns());
            let mut parts = vec![];
            if let Some(x) = &sweep.x {
                parts.push(x.caption(&x.values[c]));
            }
            if let Some(y) = &sweep.y {
                parts.push(y.caption(&y.values[r]));
            }
            parts.join(", ")
        })
        .collect()
}
