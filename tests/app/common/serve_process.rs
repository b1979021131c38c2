//! `pentimento serve` in a process of its own on a free port of 127.0.0.1, for the tests that
//! speak to it (the server's own and the app's remote backend).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` with `args` on a free port and waits until it listens.
pub fn serve(args: &[&str], cache: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pentimento"))
        .arg("serve")
        .args(args)
        .env("PENTIMENTO_CACHE_DIR", cache)
        .env_remove("PENTIMENTO_API_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches("/sdapi/v1").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the server did not start");
    Server {
        child,
        url: format!("http://{addr}"),
    }
}
