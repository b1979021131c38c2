//! `pentimento serve` as a client sees it, over HTTP on 127.0.0.1: txt2img and img2img with a
//! mask give what `generate` gives for the same parameters, bit for bit; progress during a job
//! and interrupt; the model list and a switch; png-info; bad requests (422), unknown models
//! (404), oversized bodies (413); a listener beyond this machine without a key is refused, and
//! with one every request without the key gets 401.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::serve_process::{serve, Server};
use crate::common::{fixture, run_cli, temp_dir};

fn json_of(r: ureq::Response) -> Value {
    serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null)
}

fn post_url(url: &str, body: &Value) -> (u16, Value) {
    let request = ureq::post(url).set("Content-Type", "application/json");
    match request.send_string(&body.to_string()) {
        Ok(r) => (r.status(), json_of(r)),
        Err(ureq::Error::Status(code, r)) => (code, json_of(r)),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    post_url(&format!("{}{path}", s.url), body)
}

fn get(s: &Server, path: &str) -> Value {
    json_of(ureq::get(&format!("{}{path}", s.url)).call().unwrap())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn png_pixels(b64png: &str) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64png)
        .unwrap();
    image::load_from_memory(&bytes)
        .unwrap()
        .to_rgb8()
        .into_raw()
}

fn file_pixels(p: &Path) -> Vec<u8> {
    image::open(p).unwrap().to_rgb8().into_raw()
}

/// Bit-for-bit equal pixels (said briefly when not).
#[track_caller]
fn same(a: Vec<u8>, b: Vec<u8>) {
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(
        a.len() == b.len() && differ == 0,
        "{} bytes of {} differ",
        differ,
        a.len()
    );
}

/// A folder of models to offer: the two tiny models.
fn models(d: &Path) -> PathBuf {
    let m = d.join("models");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["tiny-sd15.safetensors", "extra/tiny-sd2.safetensors"] {
        let src = fixture(f);
        let _ = std::fs::copy(&src, m.join(src.file_name().unwrap()));
    }
    m
}

#[test]
fn serve_speaks_automatic1111s_api() {
    let d = temp_dir("serve", "api");
    let cache = d.join("cache");
    let models = models(&d);
    let model = models.join("tiny-sd15.safetensors");
    let s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.to_str().unwrap(),
            "--model-dir",
            models.to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(get(&s, "/health")["status"], "ok");
    // txt2img: what `generate` makes, bit for bit.
    let (code, r) = post(
        &s,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "a heron", "negative_prompt": "blurry", "seed": 5, "steps": 3,
                "cfg_scale": 6.5, "width": 64, "height": 64, "sampler_name": "DPM++ 2M",
                "scheduler": "Karras", "batch_size": 2}),
    );
    assert_eq!(code, 200, "{r}");
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let info: Value = serde_json::from_str(r["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["all_seeds"], json!([5, 6]));
    assert!(info["infotexts"][0]
        .as_str()
        .unwrap()
        .contains("Sampler: DPM++ 2M, Schedule type: Karras"));
    let out = d.join("cli.png");
    let o = run_cli(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a heron",
            "--negative-prompt",
            "blurry",
            "--seed",
            "5",
            "--steps",
            "3",
            "--cfg",
            "6.5",
            "--width",
            "64",
            "--height",
            "64",
            "--sampler",
            "DPM++ 2M Karras",
            "--batch-size",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (i, image) in images.iter().enumerate() {
        same(
            png_pixels(image.as_str().unwrap()),
            file_pixels(&d.join(format!("cli-{}.png", i + 1))),
        );
    }
    // png-info reads the answer's PNG.
    let (code, p) = post(&s, "/sdapi/v1/png-info", &json!({"image": images[0]}));
    assert_eq!(code, 200);
    assert!(p["info"].as_str().unwrap().contains("Seed: 5"), "{p}");
    // img2img with a mask: what `generate --init-image --mask` makes.
    let init = fixture("extra/inpaint-96x128-image.png");
    let mask = fixture("extra/inpaint-96x128-mask.png");
    let (code, r) = post(
        &s,
        "/sdapi/v1/img2img",
        &json!({"prompt": "a boat", "seed": 9, "steps": 4, "cfg_scale": 7.5, "width": 96, "height": 128,
                "sampler_name": "Euler", "init_images": [b64(&std::fs::read(&init).unwrap())],
                "mask": format!("data:image/png;base64,{}", b64(&std::fs::read(&mask).unwrap())),
                "mask_blur": 4, "inpainting_fill": 1, "inpaint_full_res": false,
                "denoising_strength": 0.8}),
    );
    assert_eq!(code, 200, "{r}");
    assert!(r["parameters"]["init_images"]
        .as_array()
        .unwrap()
        .is_empty());
    let out = d.join("cli-inpaint.png");
    let o = run_cli(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a boat",
            "--seed",
            "9",
            "--steps",
            "4",
            "--width",
            "96",
            "--height",
            "128",
            "--sampler",
            "Euler",
            "--init-image",
            init.to_str().unwrap(),
            "--mask",
            mask.to_str().unwrap(),
            "--mask-blur",
            "4",
            "--masked-content",
            "original",
            "--strength",
            "0.8",
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(
        png_pixels(r["images"][0].as_str().unwrap()),
        file_pixels(&out),
    );
    // Progress during a long job, then an interrupt ends it early.
    let url = s.url.clone();
    let long = std::thread::spawn(move || {
        post_url(
            &format!("{url}/sdapi/v1/txt2img"),
            &json!({"prompt": "x", "seed": 1, "steps": 150, "width": 256, "height": 256}),
        )
    });
    let start = Instant::now();
    loop {
        let p = get(&s, "/sdapi/v1/progress");
        if p["state"]["sampling_step"].as_u64().unwrap_or(0) > 0 {
            assert!(p["progress"].as_f64().unwrap() > 0.0);
            assert_eq!(p["state"]["sampling_steps"], 150);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress: {p}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = post(&s, "/sdapi/v1/interrupt", &json!({}));
    assert_eq!(code, 200);
    let (code, r) = long.join().unwrap();
    assert_eq!(code, 200, "{r}");
    assert!(
        r["images"].as_array().unwrap().is_empty(),
        "interrupted: no image"
    );
    // The model list, a switch, and the options that show it.
    let list = get(&s, "/sdapi/v1/sd-models");
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert!(
        titles.contains(&"tiny-sd15") && titles.contains(&"tiny-sd2"),
        "{list}"
    );
    assert!(
        list.to_string().find(d.to_str().unwrap()).is_none(),
        "no server paths"
    );
    let (code, _) = post(
        &s,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": "tiny-sd2"}),
    );
    assert_eq!(code, 200);
    let options = get(&s, "/sdapi/v1/options");
    assert!(
        options["sd_model_checkpoint"]
            .as_str()
            .unwrap()
            .starts_with("tiny-sd2"),
        "{options}"
    );
    // A path is not a model name; bad requests are 422 with the reason.
    let (code, _) = post(
        &s,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": model.to_str().unwrap()}),
    );
    assert_eq!(code, 404);
    let (code, r) = post(
        &s,
        "/sdapi/v1/txt2img",
        &json!({"sampler_name": "Nope", "steps": 2}),
    );
    assert_eq!(code, 422);
    assert!(r["detail"].as_str().unwrap().contains("Nope"));
    let (code, _) = post(&s, "/sdapi/v1/txt2img", &json!({"width": 63, "steps": 2}));
    assert_eq!(code, 422);
    let (code, _) = post(
        &s,
        "/sdapi/v1/img2img",
        &json!({"init_images": ["bm90IGFuIGltYWdl"], "steps": 2}),
    );
    assert_eq!(code, 422);
    assert_eq!(get(&s, "/sdapi/v1/samplers")[0]["name"], "Euler");
    // A body past the limit is refused from its length, before it is read.
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{{\"prompt\": \""
    )
    .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}

#[test]
fn beyond_this_machine_only_with_a_key() {
    let d = temp_dir("serve", "key");
    let cache = d.join("cache");
    let o = run_cli(&["serve", "--listen", "0.0.0.0:0"], &cache);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--api-key"));
    let s = serve(&["--listen", "0.0.0.0:0", "--api-key", "s3cret"], &cache);
    let url = s.url.replace("0.0.0.0", "127.0.0.1");
    let call = |auth: Option<&str>| {
        let mut r = ureq::get(&format!("{url}/sdapi/v1/samplers"));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        match r.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(call(None), 401);
    assert_eq!(call(Some("Bearer wrong")), 401);
    assert_eq!(call(Some("Bearer s3cret")), 200);
    let basic = |s: &str| format!("Basic {}", b64(s.as_bytes()));
    assert_eq!(call(Some(&basic("user:s3cret"))), 200);
    assert_eq!(call(Some(&basic("user:nope"))), 401);
    assert_eq!(call(Some("Basic !!!")), 401);
    // A load balancer's probe needs no key and learns only that the instance is up.
    let health: Value = json_of(ureq::get(&format!("{url}/health")).call().unwrap());
    assert_eq!(health["status"], "ok");
    assert_eq!(health["busy"], false);
    assert!(health.get("model").is_none(), "{health}");
}

/// ControlNet units as AUTOMATIC1111's extension takes them (`alwayson_scripts.controlnet`):
/// the same picture as `generate --control`, bit for bit; the extension's model and module
/// lists; names that are paths, unknown models and bad values refused (422).
#[test]
fn controlnet_units_as_the_extension_takes_them() {
    let d = temp_dir("serve", "controlnet");
    let cache = d.join("cache");
    let models = models(&d);
    let model = models.join("tiny-sd15.safetensors");
    let cn_dir = d.join("ControlNet");
    std::fs::create_dir_all(&cn_dir).unwrap();
    std::fs::copy(
        fixture("extra/controlnet/tiny-cn-b.safetensors"),
        cn_dir.join("control_tiny_canny.safetensors"),
    )
    .unwrap();
    let s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.to_str().unwrap(),
            "--controlnet-dir",
            cn_dir.to_str().unwrap(),
        ],
        &cache,
    );
    assert_eq!(
        get(&s, "/controlnet/model_list")["model_list"],
        json!(["control_tiny_canny"])
    );
    assert!(get(&s, "/controlnet/module_list")["module_list"]
        .as_array()
        .unwrap()
        .contains(&json!("canny")));
    let hint = fixture("tiny-sd15-img2img.3-image.png");
    let unit = |extra: Value| {
        let mut u = json!({"image": b64(&std::fs::read(&hint).unwrap()), "module": "canny",
            "model": "control_tiny_canny [8fe0607e76]", "weight": 0.8, "threshold_a": 60,
            "threshold_b": 140, "guidance_start": 0.1, "guidance_end": 0.9, "control_mode": 2});
        for (k, v) in extra.as_object().unwrap() {
            u[k] = v.clone();
        }
        u
    };
    let body = |u: Value| {
        json!({"prompt": "a castle", "seed": 9, "steps": 3, "cfg_scale": 7, "width": 64,
               "height": 64, "sampler_name": "Euler",
               "alwayson_scripts": {"controlnet": {"args": [u]}}})
    };
    let (code, r) = post(&s, "/sdapi/v1/txt2img", &body(unit(json!({}))));
    assert_eq!(code, 200, "{r}");
    let served = png_pixels(r["images"][0].as_str().unwrap());
    let info: Value = serde_json::from_str(r["info"].as_str().unwrap()).unwrap();
    assert!(info["infotexts"][0]
        .as_str()
        .unwrap()
        .contains("ControlNet 0: \"Module: canny, Model: control_tiny_canny"));
    // The echoed parameters leave the unit's image out.
    assert!(r["parameters"]["alwayson_scripts"]["controlnet"]["args"][0]
        .get("image")
        .is_none());
    let out = d.join("cli.png");
    let o = run_cli(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a castle",
            "--seed",
            "9",
            "--steps",
            "3",
            "--cfg",
            "7",
            "--width",
            "64",
            "--height",
            "64",
            "--sampler",
            "Euler",
            "--control",
            &format!(
                "canny=60,140:{}:{}:0.8:0.1:0.9:control",
                cn_dir.join("control_tiny_canny.safetensors").display(),
                hint.display()
            ),
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(served, file_pixels(&out));
    // Disabled units change nothing; refused values say why.
    let (code, _) = post(
        &s,
        "/sdapi/v1/txt2img",
        &body(unit(json!({"enabled": false}))),
    );
    assert_eq!(code, 200);
    for (bad, needle) in [
        (json!({"model": "../../../etc/passwd"}), "no ControlNet"),
        (
            json!({"model": cn_dir.join("control_tiny_canny.safetensors")}),
            "no ControlNet",
        ),
        (json!({"model": "None"}), "names no model"),
        (json!({"module": "openpose_full"}), "unknown preprocessor"),
        (json!({"weight": 1e9}), "weight"),
        (json!({"guidance_start": 0.9, "guidance_end": 0.1}), "start"),
        (json!({"threshold_a": 900}), "threshold_a"),
        (json!({"control_mode": 7}), "control_mode"),
        (json!({"image": "not base64!"}), ""),
        (json!({"image": null}), "without an image"),
    ] {
        let (code, r) = post(&s, "/sdapi/v1/txt2img", &body(unit(bad.clone())));
        assert_eq!(code, 422, "{bad}: {r}");
        assert!(r["detail"].as_str().unwrap().contains(needle), "{bad}: {r}");
    }
}

/// A job before any model is chosen is the client's to fix: 409 with what to do, not a 500.
#[test]
fn a_job_without_a_model_is_a_conflict_that_says_what_to_set() {
    let d = temp_dir("serve", "no-model");
    let models = models(&d);
    let s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--model-dir",
            models.to_str().unwrap(),
        ],
        &d.join("cache"),
    );
    let (code, r) = post(
        &s,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "a heron", "steps": 2, "width": 64, "height": 64}),
    );
    assert_eq!(code, 409, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("sd_model_checkpoint"),
        "{r}"
    );
}
