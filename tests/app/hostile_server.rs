//! The app's remote backend against a hostile server on 127.0.0.1: answers that are not JSON,
//! deeply nested, with images that are not images or decode to enormous sizes, short batches,
//! redirects that would carry the key elsewhere, absurd progress. Each job ends with an error
//! said in a line (or a result), never a panic or a hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pentimento::backend::BackendEvent;
use pentimento::engine::job::{Job, JobKind};
use pentimento::engine::params::GenerationParams;
use pentimento::engine::worker::Event;
use pentimento::remote::{RemoteWorker, Server, ServerEvent};

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A server answering each path with what `answer` says; it records the requests' headers.
struct Fake {
    url: String,
    headers: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn fake(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let headers: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, stopped, answer) = (headers.clone(), stop.clone(), Arc::new(answer));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let (seen, answer) = (seen.clone(), answer.clone());
            std::thread::spawn(move || respond(stream, &seen, &*answer));
        }
    });
    Fake { url, headers, stop }
}

fn respond(stream: TcpStream, seen: &Mutex<Vec<String>>, answer: &dyn Fn(&str) -> Answer) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        seen.lock().unwrap().push(h.trim().to_string());
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (status, headers, body) = answer(&path);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&body);
}

fn json(v: serde_json::Value) -> Answer {
    (200, vec![], v.to_string().into_bytes())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PNG whose header claims `w`×`h` (its data is a few bytes: a decoder must refuse it by its
/// size, not try to allocate it).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crate::common::crc32(&ihdr).to_be_bytes());
    png
}

fn small_png() -> Vec<u8> {
    let mut out = vec![];
    {
        let mut enc = png::Encoder::new(&mut out, 8, 8);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[9u8; 8 * 8 * 3]).unwrap();
    }
    out
}

/// A server that says the usual things, and answers txt2img (and progress) with `job`'s.
fn server_answering(
    job: impl Fn() -> Answer + Send + Sync + 'static,
    progress: impl Fn() -> Answer + Send + Sync + 'static,
) -> Fake {
    fake(move |path| match path {
        "/health" => (404, vec![], b"{\"detail\":\"Not Found\"}".to_vec()),
        "/sdapi/v1/sd-models" => json(serde_json::json!([{"title": "m [0123]"}])),
        "/sdapi/v1/options" => json(serde_json::json!({"sd_model_checkpoint": "m [0123]"})),
        "/sdapi/v1/txt2img" => job(),
        p if p.starts_with("/sdapi/v1/progress") => progress(),
        _ => (404, vec![], vec![]),
    })
}

/// Connects, runs one small job and returns how it ended.
fn run_job(url: &str, key: Option<&str>) -> Result<usize, String> {
    let mut remote = RemoteWorker::spawn(Server::new(url, key.map(String::from)).unwrap(), || {});
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait = |remote: &RemoteWorker| loop {
        assert!(Instant::now() < deadline, "the backend hung");
        for e in remote.poll() {
            match e {
                BackendEvent::Server(ServerEvent::Connected(_)) => return Ok(None),
                BackendEvent::Server(ServerEvent::Unreachable { message }) => return Err(message),
                BackendEvent::Engine(Event::Done { results, .. }) => {
                    return Ok(Some(results.len()))
                }
                BackendEvent::Engine(Event::Failed { message, .. }) => return Err(message),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    wait(&remote)?;
    let job = Job::new(
        JobKind::Txt2Img,
        GenerationParams {
            prompt: "x".into(),
            width: 64,
            height: 64,
            ..Default::default()
        },
    );
    remote.generate(job);
    wait(&remote).map(|n| n.unwrap_or(0))
}

fn quiet() -> Answer {
    json(serde_json::json!({"state": {"sampling_step": 0, "sampling_steps": 0}}))
}

#[test]
fn hostile_answers_end_the_job_with_a_line_never_a_panic() {
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Answer)> = vec![
        ("not JSON", (200, vec![], b"<html>hello</html>".to_vec())),
        (
            "nested 100000 deep",
            (200, vec![], nested.clone().into_bytes()),
        ),
        ("no images", json(serde_json::json!({"info": "{}"}))),
        (
            "images not a list",
            json(serde_json::json!({"images": {"a": 1}})),
        ),
        ("not base64", json(serde_json::json!({"images": ["%%%"]}))),
        (
            "not an image",
            json(serde_json::json!({"images": [b64(b"GIF89a")]})),
        ),
        (
            "an image claiming 100000×100000",
            json(serde_json::json!({"images": [b64(&png_claiming(100_000, 100_000))]})),
        ),
        (
            "an image claiming 0×0",
            json(serde_json::json!({"images": [b64(&png_claiming(0, 0))]})),
        ),
        (
            "an error with a huge detail",
            (500, vec![], "x".repeat(1 << 20).into_bytes()),
        ),
        (
            "a redirect elsewhere",
            (
                307,
                vec![("Location".into(), "http://127.0.0.1:9/steal".into())],
                vec![],
            ),
        ),
        ("an empty 200", (200, vec![], vec![])),
    ];
    for (what, answer) in cases {
        let answer = Arc::new(answer);
        let a = answer.clone();
        let server = server_answering(move || (*a).clone(), quiet);
        let got = run_job(&server.url, Some("k"));
        let message = got.expect_err(what);
        if what.contains("redirect") {
            assert!(
                message.contains("redirects to http://127.0.0.1:9/steal"),
                "{message}"
            );
        }
        assert!(
            !message.is_empty() && !message.contains('\n') && message.len() < 600,
            "{what}: {message:?}"
        );
    }
}

#[test]
fn absurd_progress_is_ignored_and_the_job_still_ends() {
    let good = json(serde_json::json!({"images": [b64(&small_png())]}));
    for progress in [
        serde_json::json!({"state": {"sampling_step": 1e300, "sampling_steps": -1}}),
        serde_json::json!({"state": {"sampling_step": 5, "sampling_steps": 2},
                           "current_image": b64(&png_claiming(100_000, 100_000))}),
        serde_json::json!({"state": {"sampling_step": 1, "sampling_steps": 2},
                           "current_image": "%%%"}),
        serde_json::json!("no"),
    ] {
        let (g, p) = (good.clone(), json(progress));
        // Each answer waits long enough for progress to be asked for.
        let server = server_answering(
            move || {
                std::thread::sleep(Duration::from_millis(700));
                g.clone()
            },
            move || p.clone(),
        );
        assert_eq!(run_job(&server.url, None), Ok(1));
    }
}

#[test]
fn the_key_goes_only_to_the_server_and_a_refusal_is_said() {
    let server = fake(|_| (401, vec![], br#"{"detail":"Not authenticated"}"#.to_vec()));
    let e = run_job(&server.url, Some("s3cret")).unwrap_err();
    assert!(e.contains("Not authenticated"), "{e}");
    let sent = server.headers.lock().unwrap().clone();
    assert!(
        sent.iter().any(|h| h == "Authorization: Bearer s3cret"),
        "{sent:?}"
    );
    // AUTOMATIC1111's --api-auth user:password is basic auth.
    let server = fake(|_| (401, vec![], vec![]));
    let e = run_job(&server.url, Some("me:pw")).unwrap_err();
    assert!(e.contains("API key"), "{e}");
    let sent = server.headers.lock().unwrap().clone();
    assert!(
        sent.iter()
            .any(|h| h == &format!("Authorization: Basic {}", b64(b"me:pw"))),
        "{sent:?}"
    );
}
