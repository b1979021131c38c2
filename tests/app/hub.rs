//! Downloads from a hub: `crate::common::fake_hub` plays huggingface.co on 127.0.0.1.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::common::fake_hub::{FakeHub, Tamper, COMMIT, REPO};
use crate::common::fixture;
use pentimento::library::hub::{Hub, HubError, PullEvent, Timeouts};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pentimento-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let read = |p: &Path| {
        let mut v = vec![];
        std::fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    read(a) == read(b)
}

#[test]
fn pulls_a_pipeline_with_progress_into_the_hub_cache() {
    let server = FakeHub::start();
    let cache = temp("pull");
    let hub = Hub::new(Some(server.endpoint.clone()), Some(cache.clone())).unwrap();
    let mut events = vec![];
    let folder = hub.pull(REPO, None, &[], &mut |e| events.push(e)).unwrap();

    // The hub cache layout that other tools share.
    assert!(folder.starts_with(
        cache
            .join("models--tester--tiny-sd15/snapshots")
            .join(COMMIT)
    ));
    for f in [
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "tokenizer/vocab.json",
    ] {
        assert!(
            same_bytes(&folder.join(f), &fixture("tiny-sd15").join(f)),
            "{f}"
        );
    }
    assert!(
        !folder.join("safety_checker").exists(),
        "only what a pipeline needs"
    );
    assert!(!folder.join("README.md").exists());

    let Some(PullEvent::Planned { files }) = events.first() else {
        panic!("the plan comes first: {events:?}");
    };
    for f in files {
        let last = events.iter().rev().find_map(|e| match e {
            PullEvent::Progress {
                file, done, total, ..
            } if file == f => Some((*done, *total)),
            _ => None,
        });
        let (done, total) = last.unwrap_or_else(|| panic!("no progress for {f}"));
        assert_eq!(done, total, "{f} complete");
        assert!(events.contains(&PullEvent::Downloaded { file: f.clone() }));
    }

    // It loads like any diffusers folder.
    let sd =
        pentimento::engine::StableDiffusion::load(&folder, &pentimento::engine::LoadOptions::cpu())
            .unwrap();
    assert_eq!(sd.info.family.to_string(), "SD 1.x");

    // A second pull finds everything cached and downloads nothing.
    let before = server.state.lock().unwrap().log.len();
    let mut again = vec![];
    let same = hub.pull(REPO, None, &[], &mut |e| again.push(e)).unwrap();
    assert_eq!(same, folder);
    assert!(again
        .iter()
        .all(|e| !matches!(e, PullEvent::Progress { .. })));
    assert_eq!(
        server.state.lock().unwrap().log.len(),
        before + 1,
        "only the listing"
    );
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let server = FakeHub::start();
    let cache = temp("resume");
    let file = "unet/diffusion_pytorch_model.safetensors";
    server.cut(file, 3000);
    let hub = Hub::new(Some(server.endpoint.clone()), Some(cache.clone())).unwrap();
    let err = hub
        .pull(REPO, None, &[file.to_string()], &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("again to resume"), "{err}");

    let mut events = vec![];
    let path = hub
        .pull(REPO, None, &[file.to_string()], &mut |e| events.push(e))
        .unwrap();
    assert!(same_bytes(&path, &fixture("tiny-sd15").join(file)));
    let ranges = server.ranges_for(file);
    assert_eq!(
        ranges.last().unwrap().as_deref(),
        Some("bytes=3000-"),
        "the second attempt asks only for the rest: {ranges:?}"
    );
    let first = events.iter().find_map(|e| match e {
        PullEvent::Progress { done, .. } => Some(*done),
        _ => None,
    });
    assert!(
        first.unwrap() >= 3000,
        "progress starts from the bytes already there"
    );
}

#[test]
fn missing_repositories_files_and_servers_are_clear_errors() {
    let server = FakeHub::start();
    let cache = temp("errors");
    let hub = Hub::new(Some(server.endpoint.clone()), Some(cache.clone())).unwrap();

    let err = hub
        .pull("tester/no-such-model", None, &[], &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, HubError::NotFound { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tester/no-such-model"), "{err}");

    let err = hub
        .pull(
            REPO,
            None,
            &["unet/missing.safetensors".into()],
            &mut |_| {},
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unet/missing.safetensors was not found"),
        "{err}"
    );

    let err = hub.pull("not a repo", None, &[], &mut |_| {}).unwrap_err();
    assert!(matches!(err, HubError::BadRepo(..)));

    // Nothing listens on a port we just closed: what being offline looks like.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let offline = Hub::new(Some(format!("http://{closed}")), Some(cache)).unwrap();
    let err = offline.pull(REPO, None, &[], &mut |_| {}).unwrap_err();
    assert!(err.to_string().starts_with("cannot reach"), "{err}");
}

#[test]
fn cli_pull_prints_the_folder_and_fails_with_one_line() {
    let server = FakeHub::start();
    let cache = temp("cli");
    let run = |repo: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pentimento"))
            .args([
                "models",
                "pull",
                repo,
                "--endpoint",
                &server.endpoint,
                "--cache-dir",
            ])
            .arg(&cache)
            .output()
            .unwrap()
    };
    let ok = run(REPO);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let folder = PathBuf::from(String::from_utf8(ok.stdout).unwrap().trim());
    assert!(folder.join("model_index.json").exists());
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("unet/diffusion_pytorch_model.safetensors"),
        "{stderr}"
    );

    let bad = run("tester/absent");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with("error: repository tester/absent was not found"),
        "{stderr}"
    );
}

/// Every file under `root`, recursively (symlinks listed, not followed).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A pull from a hub tampered with as `how`: the error it gives, after checking that nothing
/// was written outside the cache (the cache sits in a folder of its own, with a sentinel
/// beside it that a path-traversing header would reach).
fn pull_tampered(name: &str, how: Tamper, files: &[&str]) -> HubError {
    let server = FakeHub::start();
    let root = temp(name);
    let cache = root.join("a/b/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(root.join("a/b/sentinel"), b"keep").unwrap();
    let how = match how {
        // Headers naming real places near the cache.
        Tamper::Etag(e) => Tamper::Etag(e.replace("ROOT", &root.display().to_string())),
        other => other,
    };
    server.tamper(how);
    let timeouts = Timeouts {
        connect: std::time::Duration::from_secs(2),
        read: std::time::Duration::from_secs(2),
    };
    let hub =
        Hub::with_timeouts(Some(server.endpoint.clone()), Some(cache.clone()), timeouts).unwrap();
    let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    let started = std::time::Instant::now();
    let err = hub.pull(REPO, None, &files, &mut |_| {}).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "answered within its timeouts"
    );
    assert_eq!(std::fs::read(root.join("a/b/sentinel")).unwrap(), b"keep");
    let outside: Vec<_> = files_under(&root)
        .into_iter()
        .filter(|p| !p.starts_with(&cache) && !p.ends_with("a/b/sentinel"))
        .collect();
    assert!(outside.is_empty(), "written outside the cache: {outside:?}");
    for link in files_under(&cache) {
        if let Ok(target) = std::fs::canonicalize(&link) {
            assert!(
                target.starts_with(std::fs::canonicalize(&cache).unwrap()),
                "{link:?} → {target:?}"
            );
        }
    }
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    err
}

#[test]
fn headers_that_would_be_paths_are_refused_and_nothing_leaves_the_cache() {
    let unet = "unet/diffusion_pytorch_model.safetensors";
    for (name, how) in [
        ("etag-abs", Tamper::Etag("\"ROOT/a/b/sentinel\"".into())),
        ("etag-up", Tamper::Etag("\"../../sentinel\"".into())),
        (
            "etag-up2",
            Tamper::Etag("\"../../../../../../../../tmp/x\"".into()),
        ),
        (
            "commit-up",
            Tamper::CommitHeader("../../../sentinel".into()),
        ),
        ("commit-abs", Tamper::CommitHeader("/tmp".into())),
    ] {
        let err = pull_tampered(name, how, &[unet]);
        assert!(matches!(err, HubError::Refused { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains("refused"), "{name}: {err}");
    }
    // The listing's names and commit are checked the same way.
    let err = pull_tampered(
        "listing-commit",
        Tamper::ListingCommit("../../../../x".into()),
        &[],
    );
    assert!(err.to_string().contains("is not one"), "{err}");
    let err = pull_tampered(
        "listed-file",
        Tamper::ListedFile("tokenizer/../../../../../sentinel".into()),
        &[],
    );
    assert!(
        err.to_string().contains("not a plain relative path"),
        "{err}"
    );
    let err = pull_tampered("asked-file", Tamper::Hang, &["../../sentinel"]);
    assert!(
        err.to_string().contains("not a plain relative path"),
        "{err}"
    );
}

#[test]
fn broken_redirects_statuses_bodies_and_silent_servers_are_clear_errors() {
    let unet = "unet/diffusion_pytorch_model.safetensors";
    let err = pull_tampered("302", Tamper::RedirectWithoutLocation, &[unet]);
    assert!(err.to_string().contains("without a Location"), "{err}");
    let err = pull_tampered("099", Tamper::Status("099 Odd".into()), &[unet]);
    assert!(
        matches!(err, HubError::Unreachable { .. } | HubError::Http { .. }),
        "{err:?}"
    );
    let err = pull_tampered("500", Tamper::Status("500 Oops".into()), &[unet]);
    assert!(matches!(err, HubError::Http { status: 500, .. }), "{err:?}");
    let err = pull_tampered("longer", Tamper::LongerBody(1 << 20), &[unet]);
    assert!(err.to_string().contains("more than the"), "{err}");
    let err = pull_tampered("wrong-bytes", Tamper::WrongBytes, &[unet]);
    assert!(err.to_string().contains("checksum"), "{err}");
    let err = pull_tampered("hang", Tamper::Hang, &[unet]);
    assert!(matches!(err, HubError::Unreachable { .. }), "{err:?}");
}

#[test]
fn the_token_goes_only_to_the_hub() {
    let server = FakeHub::start();
    let cache = temp("token");
    std::fs::create_dir_all(&cache).unwrap();
    // The token file huggingface_hub's login writes beside the cache.
    std::fs::write(cache.parent().unwrap().join("token"), "hf_secret\n").unwrap();
    let hub = Hub::new(Some(server.endpoint.clone()), Some(cache.clone())).unwrap();
    hub.pull(REPO, None, &["model_index.json".into()], &mut |_| {})
        .unwrap();
    let seen = server.state.lock().unwrap().authorizations.clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer hf_secret")),
        "{seen:?}"
    );
    let _ = std::fs::remove_file(cache.parent().unwrap().join("token"));
}
