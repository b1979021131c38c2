//! Downloads from a hub: a local HTTP server on 127.0.0.1 plays huggingface.co (its API listing,
//! `resolve` URLs with ranges and the headers hf-hub reads), serving the tiny diffusers fixture.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::fixture;
use pentimento::library::hub::{Hub, HubError, PullEvent};
use sha2::{Digest, Sha256};

const REPO: &str = "tester/tiny-sd15";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
struct State {
    /// Requests seen: (path, Range header).
    log: Vec<(String, Option<String>)>,
    /// Files whose next body is cut after this many bytes.
    cut_after: HashMap<String, usize>,
}

struct FakeHub {
    endpoint: String,
    state: Arc<Mutex<State>>,
}

impl FakeHub {
    fn start() -> Self {
        let files = repo_files();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (files, state) = (files.clone(), shared.clone());
                std::thread::spawn(move || serve(stream, &files, &state));
            }
        });
        Self { endpoint, state }
    }

    fn cut(&self, file: &str, after: usize) {
        self.state
            .lock()
            .unwrap()
            .cut_after
            .insert(file.into(), after);
    }

    fn ranges_for(&self, file: &str) -> Vec<Option<String>> {
        let path = format!("/{REPO}/resolve/main/{file}");
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// The fixture folder as the repository's files, by repository path.
fn repo_files() -> Arc<HashMap<String, Vec<u8>>> {
    let root = fixture("tiny-sd15");
    let mut files = HashMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    // What a real pipeline repository also carries, which a pull must skip.
    files.insert("safety_checker/model.safetensors".into(), vec![0; 64]);
    files.insert("README.md".into(), b"# tiny".to_vec());
    Arc::new(files)
}

fn serve(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    state
        .lock()
        .unwrap()
        .log
        .push((path.clone(), range.clone()));

    let api = format!("/api/models/{REPO}/revision/main");
    let resolve = format!("/{REPO}/resolve/main/");
    if path == api {
        let siblings: Vec<_> = files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let Some(data) = path
        .strip_prefix(&resolve)
        .and_then(|f| files.get(f).map(|d| (f, d)))
    else {
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    let (file, data) = data;
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = match range.as_deref().and_then(|r| r.rsplit('-').next()) {
        Some(e) if !e.is_empty() => e.parse::<usize>().unwrap_or(data.len() - 1),
        _ => data.len() - 1,
    };
    let body = &data[start.min(data.len())..=end.min(data.len() - 1)];
    let etag = format!("{:x}", Sha256::digest(data));
    let _ = write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        body.len(),
        data.len()
    );
    // A whole-body request may be cut short once, like a dropped connection.
    let cut = if body.len() > 1 {
        state.lock().unwrap().cut_after.remove(file)
    } else {
        None
    };
    match cut {
        Some(n) => {
            let _ = stream.write_all(&body[..n.min(body.len())]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        None => {
            let _ = stream.write_all(body);
        }
    }
}

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
