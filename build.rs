//! Records the commit the binary is built from, for `pentimento --version` (a bug report says
//! exactly what ran). Outside a git checkout (a source tarball) it says so.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let suffix = if dirty { "+changes" } else { "" };
    // Cargo tells a build script the features it builds with.
    let mut features = vec!["cpu"];
    for (env, name) in [
        ("CARGO_FEATURE_CUDA", "cuda"),
        ("CARGO_FEATURE_METAL", "metal"),
    ] {
        if std::env::var_os(env).is_some() {
            features.push(name);
        }
    }
    println!(
        "cargo:rustc-env=PENTIMENTO_BUILD=commit {commit}{suffix}; features: {}",
        features.join(", ")
    );
    // Rebuilt when HEAD moves (a commit, a checkout); not on every edit.
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
