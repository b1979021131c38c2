//! `pentimento grid`: every cell is the image its parameters give alone, laid out row by row
//! with room for the labels, and the PNG records the sweep.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::fixture;

fn cli(args: &[&str], cache: &Path) -> Output {
    crate::common::run_cli(args, cache)
}

fn dir(name: &str) -> PathBuf {
    crate::common::temp_dir("grid", name)
}

fn base(model: &str) -> Vec<&str> {
    vec![
        "--model",
        model,
        "--prompt",
        "a red barn",
        "--steps",
        "3",
        "--width",
        "64",
        "--height",
        "64",
        "--seed",
        "5",
    ]
}

fn run_ok(args: &[&str], d: &Path) {
    let out = cli(args, d);
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The 64×64 cell at (`x`, `y`) of an RGB image.
fn cell(img: &image::RgbImage, x: u32, y: u32) -> Vec<u8> {
    image::imageops::crop_imm(img, x, y, 64, 64)
        .to_image()
        .into_raw()
}

#[test]
fn xy_grid_cells_match_single_generations() {
    let d = dir("xy");
    let model = fixture("tiny-sd15.safetensors");
    let model = model.to_str().unwrap();
    let grid = d.join("grid.png");
    let mut args = vec!["grid"];
    args.extend(base(model));
    args.extend(["--x", "cfg=3,7", "--y", "sampler=Euler a,DDIM", "--out"]);
    args.push(grid.to_str().unwrap());
    run_ok(&args, &d);

    let img = image::open(&grid).unwrap().to_rgb8();
    let gap = 4;
    let (left, top) = (img.width() - (2 * 64 + gap), img.height() - (2 * 64 + gap));
    assert!(left > 0 && top > 0, "margins for the labels");
    for (row, sampler) in ["Euler a", "DDIM"].into_iter().enumerate() {
        for (col, cfg) in ["3", "7"].into_iter().enumerate() {
            let single = d.join(format!("single-{row}-{col}.png"));
            let mut args = vec!["generate"];
            args.extend(base(model));
            args.extend(["--cfg", cfg, "--sampler", sampler, "--out"]);
            args.push(single.to_str().unwrap());
            run_ok(&args, &d);
            let want = image::open(&single).unwrap().to_rgb8().into_raw();
            let got = cell(
                &img,
                left + col as u32 * (64 + gap),
                top + row as u32 * (64 + gap),
            );
            assert_eq!(got, want, "cell {sampler}, CFG {cfg}");
        }
    }

    let info = cli(&["info", "--json", grid.to_str().unwrap()], &d);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["parameters"]["Sampler"], "Euler a");
    assert_eq!(v["record"]["sweep"]["x"]["field"], "cfg");
    assert_eq!(v["record"]["sweep"]["x"]["values"][1], "7");
    assert_eq!(v["record"]["sweep"]["y"]["values"][1], "DDIM");
    let text = cli(&["info", grid.to_str().unwrap()], &d);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("x: CFG Scale=3,7; y: Sampler=Euler a,DDIM"),
        "{text}"
    );
}

#[test]
fn seeds_alone_wrap_into_a_captioned_square() {
    let d = dir("seeds");
    let model = fixture("tiny-sd15.safetensors");
    let grid = d.join("seeds.png");
    let mut args = vec!["grid"];
    args.extend(base(model.to_str().unwrap()));
    args.extend(["--seeds", "1-4", "--out", grid.to_str().unwrap()]);
    run_ok(&args, &d);
    let img = image::open(&grid).unwrap().to_rgb8();
    assert_eq!(img.width(), 2 * 64 + 4, "two columns, no row labels");
    assert!(img.height() > 2 * 64 + 4, "a caption band above each row");
}

#[test]
fn bad_sweeps_fail_before_loading_a_model() {
    let d = dir("bad");
    let out = d.join("x.png");
    let out = out.to_str().unwrap();
    for (extra, message) in [
        (vec!["--x", "cfg=3,abc"], "not a number"),
        (vec!["--x", "size=1,2"], "unknown axis"),
        (vec!["--y", "sampler=Nope"], "unknown sampler"),
        (vec![], "--seeds, --x or --y"),
        (vec!["--x", "steps=0,2"], "steps"),
        (
            vec!["--x", "cfg=1", "--y", "steps=2", "--seeds", "1-2"],
            "free axis",
        ),
    ] {
        // A model path that does not exist: only a check before loading can answer.
        let mut args = vec![
            "grid",
            "--model",
            "/nonexistent/model.safetensors",
            "--prompt",
            "x",
        ];
        args.extend(extra.iter().copied());
        args.extend(["--out", out]);
        let o = cli(&args, &d);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
