//! `models list`: fixture models in a folder the user added and in the hub cache, with their
//! types; files that are not checkpoints are left out, broken ones reported.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fixture;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

struct Env {
    root: PathBuf,
}

impl Env {
    fn new(name: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("pentimento-library-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_pentimento"))
            .args(args)
            .env("PENTIMENTO_CONFIG_DIR", self.root.join("config"))
            .env("PENTIMENTO_CACHE_DIR", self.root.join("cache"))
            .env("HF_HUB_CACHE", self.root.join("hub"))
            .env_remove("PENTIMENTO_MODEL_DIRS")
            .output()
            .unwrap()
    }
}

#[test]
fn lists_models_from_added_folders_and_the_hub_cache() {
    let env = Env::new("list");
    // An AUTOMATIC1111-style folder: checkpoints, a subfolder, a VAE beside them, a broken file.
    let models = env.root.join("Stable-diffusion");
    std::fs::create_dir_all(models.join("inpainting")).unwrap();
    std::fs::copy(
        fixture("tiny-sd15.safetensors"),
        models.join("tiny-sd15.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        fixture("tiny-sd15-inpainting.ckpt"),
        models.join("inpainting/tiny-sd15-inpainting.ckpt"),
    )
    .unwrap();
    std::fs::copy(
        fixture("tiny-sd15-extvae.vae.pt"),
        models.join("tiny-sd15.vae.pt"),
    )
    .unwrap();
    std::fs::write(models.join("half-copied.safetensors"), b"\x10\x00\x00").unwrap();
    // A pipeline in the hub cache, as `models pull` (or diffusers) leaves it.
    let commit = "feedface00000000000000000000000000000000";
    let repo = env.root.join("hub/models--tester--tiny-sd2");
    copy_dir(
        &fixture("extra/tiny-sd2"),
        &repo.join("snapshots").join(commit),
    );
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();

    let added = env.run(&["models", "add-folder", models.to_str().unwrap()]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let out = env.run(&["models", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models_json = v["models"].as_array().unwrap();
    let find = |name: &str| {
        models_json
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {v}"))
    };
    let sd2 = find("tester/tiny-sd2");
    assert_eq!(sd2["family"], "SD 2.x");
    assert_eq!(sd2["source"]["kind"], "hub");
    assert!(sd2["prediction"].as_str().unwrap().starts_with('v'));
    let sd15 = find("tiny-sd15.safetensors");
    assert_eq!(sd15["family"], "SD 1.x");
    assert_eq!(sd15["inpainting"], false);
    assert!(sd15["bytes"].as_u64().unwrap() > 1_000_000);
    let inpaint = find("inpainting/tiny-sd15-inpainting.ckpt");
    assert_eq!(inpaint["inpainting"], true);
    assert_eq!(
        models_json.len(),
        3,
        "the VAE and the broken file are not models: {v}"
    );
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["path"]
        .as_str()
        .unwrap()
        .ends_with("half-copied.safetensors")));

    // Hashes only when asked (they read whole files), then remembered.
    assert!(sd15["hash"].is_null());
    let hashed = env.run(&["models", "list", "--hash"]);
    let text = String::from_utf8_lossy(&hashed.stdout);
    assert!(text.contains("a1444e2e48"), "{text}");
    let again: serde_json::Value =
        serde_json::from_slice(&env.run(&["models", "list", "--json"]).stdout).unwrap();
    let cached = again["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tiny-sd15.safetensors")
        .unwrap()["hash"]
        .clone();
    assert_eq!(cached, "a1444e2e48");

    // Forgetting the folder leaves the hub's model only.
    assert!(env
        .run(&["models", "remove-folder", models.to_str().unwrap()])
        .status
        .success());
    let v: serde_json::Value =
        serde_json::from_slice(&env.run(&["models", "list", "--json"]).stdout).unwrap();
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
}

#[test]
fn a_missing_folder_is_an_error_and_a_damaged_settings_file_is_kept() {
    let env = Env::new("errors");
    let out = env.run(&["models", "add-folder", "/nonexistent/models"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder"));
    std::fs::create_dir_all(env.root.join("config")).unwrap();
    let settings = env.root.join("config/library.json");
    std::fs::write(&settings, "{ broken").unwrap();
    let out = env.run(&["models", "add-folder", env.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fix or delete"));
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{ broken");
}

#[test]
fn concurrent_add_folder_runs_keep_every_folder() {
    let env = Env::new("concurrent");
    let folders: Vec<PathBuf> = (0..8)
        .map(|i| {
            let f = env.root.join(format!("models-{i}"));
            std::fs::create_dir_all(&f).unwrap();
            f
        })
        .collect();
    let children: Vec<_> = folders
        .iter()
        .map(|f| {
            Command::new(env!("CARGO_BIN_EXE_pentimento"))
                .args(["models", "add-folder"])
                .arg(f)
                .env("PENTIMENTO_CONFIG_DIR", env.root.join("config"))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let saved =
        pentimento::library::settings::LibrarySettings::load(&env.root.join("config/library.json"))
            .unwrap();
    for f in &folders {
        let f = std::fs::canonicalize(f).unwrap();
        assert!(saved.folders.contains(&f), "{f:?} lost: {saved:?}");
    }
    assert_eq!(saved.folders.len(), 8);
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("config"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_data_folder_alone_keeps_the_settings_too() {
    let env = Env::new("data-dir");
    let models = env.root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let home = env.root.join("home");
    let out = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .args(["models", "add-folder"])
        .arg(&models)
        .env_remove("PENTIMENTO_CONFIG_DIR")
        .env("PENTIMENTO_DATA_DIR", env.root.join("data"))
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.root.join("data/library.json").is_file());
    assert!(!home.exists(), "nothing written outside the data folder");
}
