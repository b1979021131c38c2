//! A local HTTP server on 127.0.0.1 that plays huggingface.co (its API listing, `resolve`
//! URLs with ranges and the headers hf-hub reads), serving the tiny diffusers fixture.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::fixture;

pub const REPO: &str = "tester/tiny-sd15";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// How a malicious or broken hub departs from the real one.
#[derive(Debug, Clone)]
pub enum Tamper {
    /// This `ETag` header (quotes included) for every file.
    Etag(String),
    /// This `X-Repo-Commit` header for every file.
    CommitHeader(String),
    /// This `sha` in the repository listing.
    ListingCommit(String),
    /// An extra file in the listing under this name.
    ListedFile(String),
    /// File requests answer `302 Found` without a Location.
    RedirectWithoutLocation,
    /// File requests answer with this status line.
    Status(String),
    /// Whole-file bodies carry this many bytes more than the declared size.
    LongerBody(usize),
    /// File requests are accepted and never answered.
    Hang,
    /// Bytes differ from the ETag's hash (one flipped).
    WrongBytes,
}

#[derive(Default)]
pub struct State {
    /// Requests seen: (path, Range header, Authorization header).
    pub log: Vec<(String, Option<String>)>,
    pub authorizations: Vec<Option<String>>,
    /// Files whose next body is cut after this many bytes.
    cut_after: HashMap<String, usize>,
    tamper: Option<Tamper>,
}

pub struct FakeHub {
    pub endpoint: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeHub {
    pub fn start() -> Self {
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

    pub fn tamper(&self, how: Tamper) {
        self.state.lock().unwrap().tamper = Some(how);
    }

    pub fn cut(&self, file: &str, after: usize) {
        self.state
            .lock()
            .unwrap()
            .cut_after
            .insert(file.into(), after);
    }

    pub fn ranges_for(&self, file: &str) -> Vec<Option<String>> {
        let paths = [
            format!("/{REPO}/resolve/main/{file}"),
            format!("/{REPO}/resolve/{COMMIT}/{file}"),
        ];
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(p, _)| paths.contains(p))
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
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let tamper = {
        let mut s = state.lock().unwrap();
        s.log.push((path.clone(), range.clone()));
        s.authorizations.push(authorization);
        s.tamper.clone()
    };

    let api = format!("/api/models/{REPO}/revision/main");
    if path == api {
        let mut siblings: Vec<_> = files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let mut sha = COMMIT.to_string();
        match &tamper {
            Some(Tamper::ListingCommit(c)) => sha = c.clone(),
            Some(Tamper::ListedFile(f)) => siblings.push(serde_json::json!({ "rfilename": f })),
            _ => {}
        }
        let body = serde_json::json!({ "sha": sha, "siblings": siblings }).to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let file = path
        .strip_prefix(&format!("/{REPO}/resolve/main/"))
        .or_else(|| path.strip_prefix(&format!("/{REPO}/resolve/{COMMIT}/")));
    if file.is_some() {
        match &tamper {
            Some(Tamper::RedirectWithoutLocation) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
            Some(Tamper::Status(line)) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
            Some(Tamper::Hang) => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                return;
            }
            _ => {}
        }
    }
    let Some(data) = file.and_then(|f| files.get(f).map(|d| (f, d))) else {
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
    let mut etag = format!("\"{:x}\"", Sha256::digest(data));
    let mut commit = COMMIT.to_string();
    let mut owned = data[start.min(data.len())..=end.min(data.len() - 1)].to_vec();
    match &tamper {
        Some(Tamper::Etag(e)) => etag = e.clone(),
        Some(Tamper::CommitHeader(c)) => commit = c.clone(),
        Some(Tamper::LongerBody(n)) if owned.len() > 1 => owned.extend(vec![b'x'; *n]),
        Some(Tamper::WrongBytes) if owned.len() > 1 => owned[0] ^= 1,
        _ => {}
    }
    let body = &owned[..];
    let _ = write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nETag: {etag}\r\nX-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
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
