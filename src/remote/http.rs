//! The HTTP calls to a server speaking AUTOMATIC1111's API: its address checked once, the key
//! sent with each call, answers read within a bound and errors said as the server said them.

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// The largest answer read (a batch of large PNGs in base64 is tens of MiB).
pub const MAX_ANSWER_BYTES: u64 = 256 << 20;
/// How long a quick call (progress, the model list) may take.
const QUICK: Duration = Duration::from_secs(15);
const CONNECT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadAddress(String),
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with an error status; `detail` is what it said.
    #[error("the server answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("the server's answer: {0}")]
    BadAnswer(String),
}

/// A server's address and key. Cloned into the threads that call it.
#[derive(Clone)]
pub struct Server {
    base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Server").field("base", &self.base).finish()
    }
}

impl Server {
    /// `url` as users give it (`http://host:7860`, with or without `/sdapi/v1` or a final `/`);
    /// http or https only, with a host.
    pub fn new(url: &str, key: Option<String>) -> Result<Self, HttpError> {
        let url = url.trim();
        let bad = |why: &str| HttpError::BadAddress(format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("give an http:// or https:// address"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("no host"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces in the address"));
        }
        let base = url.trim_end_matches('/');
        let base = base.strip_suffix("/sdapi/v1").unwrap_or(base).to_string();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT)
            // A redirect could carry the key to another host: an API server does not redirect.
            .redirects(0)
            .build();
        Ok(Self {
            base,
            key: key.filter(|k| !k.is_empty()),
            agent,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn authorize(&self, request: ureq::Request) -> ureq::Request {
        match &self.key {
            None => request,
            // AUTOMATIC1111's `--api-auth user:password` is basic auth; a plain key a bearer
            // token (Pentimento takes both).
            Some(key) if key.contains(':') => request.set(
                "Authorization",
                &format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(key)
                ),
            ),
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
        }
    }

    /// GET `path`, answered within seconds.
    pub fn get(&self, path: &str) -> Result<Value, HttpError> {
        let request = self
            .authorize(self.agent.get(&self.at(path)))
            .timeout(QUICK);
        self.answer(path, request.call())
    }

    /// POST a JSON body to `path`; `quick` bounds the wait, else it waits as long as the server
    /// works (a job on a slow machine takes minutes).
    pub fn post(&self, path: &str, body: &str, quick: bool) -> Result<Value, HttpError> {
        let mut request = self
            .authorize(self.agent.post(&self.at(path)))
            .set("Content-Type", "application/json");
        if quick {
            request = request.timeout(QUICK);
        }
        self.answer(path, request.send_string(body))
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(
        &self,
        path: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<Value, HttpError> {
        match result {
            Ok(response) if (300..400).contains(&response.status()) => {
                let to: String = response
                    .header("Location")
                    .unwrap_or("elsewhere")
                    .chars()
                    .take(200)
                    .collect();
                Err(HttpError::Status {
                    status: response.status(),
                    detail: format!("it redirects to {to}: give that address, if you trust it"),
                })
            }
            Ok(response) => {
                let text = read_bounded(response)?;
                serde_json::from_str(&text).map_err(|e| HttpError::BadAnswer(e.to_string()))
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = read_bounded(response).unwrap_or_default();
                Err(HttpError::Status {
                    status,
                    detail: detail(status, &text),
                })
            }
            Err(e) => Err(HttpError::Unreachable {
                url: self.at(path),
                message: e.to_string(),
            }),
        }
    }
}

fn read_bounded(response: ureq::Response) -> Result<String, HttpError> {
    let mut text = String::new();
    response
        .into_reader()
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| HttpError::BadAnswer(e.to_string()))?;
    if text.len() as u64 > MAX_ANSWER_BYTES {
        return Err(HttpError::BadAnswer(format!(
            "more than {} MiB",
            MAX_ANSWER_BYTES >> 20
        )));
    }
    Ok(text)
}

/// What an error answer says: AUTOMATIC1111's and FastAPI's `detail` (text or validation
/// list), our `detail`/`error`, else the first line of the body.
fn detail(status: u16, body: &str) -> String {
    const MAX_DETAIL_CHARS: usize = 300;
    let said = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let d = v.get("detail").or_else(|| v.get("error"))?;
        Some(match d {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.get("msg").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
    });
    let text = said.unwrap_or_else(|| body.lines().next().unwrap_or("").to_string());
    let text: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    match status {
        401 | 403 if text.is_empty() => "a valid API key is required".into(),
        _ if text.is_empty() => "no reason given".into(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_users_give_them() {
        for (given, base) in [
            ("http://127.0.0.1:7860", "http://127.0.0.1:7860"),
            ("http://127.0.0.1:7860/", "http://127.0.0.1:7860"),
            (" https://gpu.example/sdapi/v1/ ", "https://gpu.example"),
            ("http://box:7860/proxy", "http://box:7860/proxy"),
        ] {
            assert_eq!(Server::new(given, None).unwrap().url(), base);
        }
        for bad in [
            "",
            "127.0.0.1:7860",
            "file:///etc/passwd",
            "ftp://x",
            "http://",
            "http:///x",
            "http://a b",
            "http://a\nb",
        ] {
            assert!(Server::new(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_key_is_never_printed() {
        let s = Server::new("http://h", Some("s3cret".into())).unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn error_details_as_servers_say_them() {
        assert_eq!(
            detail(422, r#"{"detail": "no such sampler"}"#),
            "no such sampler"
        );
        assert_eq!(
            detail(
                422,
                r#"{"detail": [{"loc": ["body"], "msg": "field required"}, {"msg": "bad"}]}"#
            ),
            "field required; bad"
        );
        assert_eq!(
            detail(
                401,
                r#"{"error": "Unauthorized", "detail": "a valid API key is required"}"#
            ),
            "a valid API key is required"
        );
        assert_eq!(detail(401, ""), "a valid API key is required");
        assert_eq!(
            detail(502, "<html>Bad Gateway</html>\nmore"),
            "<html>Bad Gateway</html>"
        );
        assert_eq!(detail(500, &"x".repeat(10_000)).len(), 300);
        assert_eq!(detail(500, "[[[[[[[[[[[[[[[[[[[["), "[[[[[[[[[[[[[[[[[[[[");
    }
}
