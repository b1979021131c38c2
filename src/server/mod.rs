//! `pentimento serve`: AUTOMATIC1111's `/sdapi/v1` HTTP API on the same engine as the app and
//! the CLI, so that the dozens of clients that speak it (and the app on another machine) can
//! render here. axum on tokio does the HTTP; one worker runs the jobs in order.
//!
//! Security: it listens on 127.0.0.1 unless told otherwise, and any other address needs an API
//! key (`Authorization: Bearer KEY`, or AUTOMATIC1111's basic auth with the key as password or
//! as `user:password`), compared in constant time. Bodies are limited; images are decoded within
//! the engine's limits; model names are looked up among the models this server was given,
//! never used as paths.

pub mod api;
mod controlnet;
mod engine;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use engine::{Engine, ModelState};

/// Largest request body (a few base64 images).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// A model this server can load, by the name clients use.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// AUTOMATIC1111's model name: the file's stem (a folder's name).
    pub name: String,
    pub path: PathBuf,
    pub hash: Option<String>,
}

impl ServedModel {
    /// AUTOMATIC1111's title: `name [hash]`.
    pub fn title(&self) -> String {
        match &self.hash {
            Some(h) => format!("{} [{h}]", self.name),
            None => self.name.clone(),
        }
    }

    fn matches(&self, wanted: &str) -> bool {
        let wanted = wanted.trim();
        wanted == self.title()
            || wanted == self.name
            || self.hash.as_deref() == Some(wanted)
            || self
                .path
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == wanted)
    }
}

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub api_key: Option<String>,
    pub models: Vec<ServedModel>,
    /// Loaded at start.
    pub model: Option<PathBuf>,
    pub load: crate::engine::model::LoadOptions,
    /// LoRA and embedding folders for `<lora:…>` tags and embedding names.
    pub lora_dirs: Vec<PathBuf>,
    pub embedding_dirs: Vec<PathBuf>,
    /// Folders whose ControlNets requests may name.
    pub controlnet_dirs: Vec<PathBuf>,
}

struct AppState {
    engine: Engine,
    models: Vec<ServedModel>,
    api_key: Option<String>,
    lora_dirs: Vec<PathBuf>,
    embedding_dirs: Vec<PathBuf>,
    controlnet_dirs: Vec<PathBuf>,
    /// The depth preprocessor's network, loaded at its first use.
    depth: std::sync::Mutex<Option<Arc<crate::engine::control::depth::DepthEstimator>>>,
}

type Shared = Arc<AppState>;

/// An error as AUTOMATIC1111's API answers it: a status and `{"error", "detail"}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self
            .0
            .canonical_reason()
            .unwrap_or("error")
            .replace(' ', "");
        (self.0, Json(json!({"error": kind, "detail": self.1}))).into_response()
    }
}

impl From<api::BadRequest> for ApiError {
    fn from(e: api::BadRequest) -> Self {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.0)
    }
}

/// The router, for `serve` and for tests that drive it in-process.
fn router(state: Shared) -> Router {
    let keyed = state.api_key.is_some();
    let mut app = Router::new()
        .route("/sdapi/v1/txt2img", post(txt2img))
        .route("/sdapi/v1/img2img", post(img2img))
        .route("/sdapi/v1/progress", get(progress))
        .route("/sdapi/v1/interrupt", post(interrupt))
        .route("/sdapi/v1/sd-models", get(sd_models))
        .route("/sdapi/v1/options", get(get_options).post(set_options))
        .route("/sdapi/v1/samplers", get(samplers))
        .route("/sdapi/v1/png-info", post(png_info))
        .route("/controlnet/model_list", get(controlnet_models))
        .route("/controlnet/module_list", get(controlnet_modules))
        .route("/health", get(health))
        .route("/internal/ping", get(|| async { Json(json!({})) }));
    if keyed {
        app = app.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    }
    app.layer(axum::middleware::from_fn(refuse_oversized))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Runs the server until it is killed.
pub fn serve(options: ServeOptions) -> anyhow::Result<()> {
    if !options.listen.ip().is_loopback() && options.api_key.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "listening on {} (beyond this machine) needs --api-key KEY",
            options.listen
        );
    }
    let engine = Engine::start(options.load.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let Some(path) = options.model.clone() {
            eprintln!("loading {}", path.display());
            engine
                .load(path.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        let state = Arc::new(AppState {
            engine,
            models: options.models,
            api_key: options.api_key,
            lora_dirs: options.lora_dirs,
            embedding_dirs: options.embedding_dirs,
            controlnet_dirs: options.controlnet_dirs,
            depth: std::sync::Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
        eprintln!(
            "serving AUTOMATIC1111's API on http://{}/sdapi/v1",
            listener.local_addr()?
        );
        axum::serve(listener, router(state)).await?;
        Ok(())
    })
}

/// A body declared longer than the limit is refused (413) from its header, before any of it
/// is read (the extractor's limit would otherwise wait for the bytes to arrive).
async fn refuse_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a body of more than {} MiB", MAX_BODY_BYTES >> 20),
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses a request without the key (401), comparing in constant time.
async fn require_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Some(key) = state.api_key.as_deref() else {
        return next.run(request).await;
    };
    // A load balancer's health probe carries no key; the answer then says no more than
    // whether the instance is up and busy.
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    if authorized(request.headers(), key) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"pentimento\"")],
            Json(json!({"error": "Unauthorized", "detail": "a valid API key is required"})),
        )
            .into_response()
    }
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    use base64::Engine as _;
    use subtle::ConstantTimeEq;
    let same = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b));
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return same(token.trim().as_bytes(), key.as_bytes());
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        // The key as the password (any user), or AUTOMATIC1111's `user:password` as the key.
        let password = decoded
            .iter()
            .position(|&b| b == b':')
            .map(|i| &decoded[i + 1..])
            .unwrap_or(&[]);
        return same(password, key.as_bytes()) | same(&decoded, key.as_bytes());
    }
    false
}

/// Loads the checkpoint a request names, when it is not the one loaded.
async fn switch_model(state: &AppState, wanted: &str) -> Result<(), ApiError> {
    let model = state
        .models
        .iter()
        .find(|m| m.matches(wanted))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no model {wanted:?} here (see /sdapi/v1/sd-models)"),
            )
        })?;
    if let ModelState::Loaded(info) = state.engine.model() {
        if info.path == model.path {
            return Ok(());
        }
    }
    state
        .engine
        .load(model.path.clone())
        .await
        .map(|_| ())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The LoRAs and embeddings a job's prompts name, from the server's folders.
fn with_adapters(
    state: &AppState,
    job: crate::engine::Job,
) -> Result<crate::engine::Job, ApiError> {
    let p = &job.params;
    let loras = crate::engine::model::adapters::find::prompt_loras(&p.prompt, &state.lora_dirs)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let embeddings = crate::engine::model::adapters::embedding::embeddings_in(
        &[&p.prompt, &p.negative_prompt],
        &state.embedding_dirs,
    );
    Ok(job.with_loras(loras).with_embeddings(embeddings))
}

async fn controlnet_models(State(state): State<Shared>) -> Json<Value> {
    Json(controlnet::model_list_json(&state.controlnet_dirs))
}

async fn controlnet_modules() -> Json<Value> {
    Json(controlnet::module_list_json())
}

/// The request's ControlNet units with their preprocessors run (off the async threads: the
/// depth network takes a while).
async fn control_units(
    state: &Shared,
    common: &api::Common,
    fallback: Option<crate::engine::image::RgbImage>,
) -> Result<Vec<crate::engine::control::ControlUnit>, ApiError> {
    let requested = controlnet::units(
        common.alwayson_scripts.as_ref(),
        &state.controlnet_dirs,
        fallback.as_ref(),
    )?;
    if requested.is_empty() {
        return Ok(vec![]);
    }
    let state = state.clone();
    let units = tokio::task::spawn_blocking(move || -> Result<Vec<_>, ApiError> {
        let depth = if requested.iter().any(|u| u.module.needs_model()) {
            Some(depth_estimator(&state)?)
        } else {
            None
        };
        requested
            .into_iter()
            .map(|u| u.into_unit(depth.as_deref()).map_err(ApiError::from))
            .collect()
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    crate::engine::control::validate(&units)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(units)
}

/// The depth network (downloaded with `models pull`), loaded once.
fn depth_estimator(
    state: &AppState,
) -> Result<Arc<crate::engine::control::depth::DepthEstimator>, ApiError> {
    use crate::engine::control::depth::{DepthEstimator, DEPTH_REPO};
    let mut held = state
        .depth
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "depth state".into()))?;
    if let Some(d) = held.as_ref() {
        return Ok(d.clone());
    }
    let dir = crate::library::adapter_dirs::depth_model(None).ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the depth preprocessor needs Depth Anything V2 on the server: `pentimento models pull {DEPTH_REPO}`"),
        )
    })?;
    let d = Arc::new(
        DepthEstimator::load(&dir, &candle_core::Device::Cpu)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    *held = Some(d.clone());
    Ok(d)
}

async fn generate(
    state: &AppState,
    checkpoint: Option<&str>,
    jobs: Vec<crate::engine::Job>,
    controls: Vec<crate::engine::control::ControlUnit>,
    request: &impl serde::Serialize,
) -> Result<Json<Value>, ApiError> {
    if let Some(name) = checkpoint {
        switch_model(state, name).await?;
    }
    // No model is the client's to fix (it names one), not a fault of the server.
    if !matches!(state.engine.model(), ModelState::Loaded(_)) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no model is loaded: set sd_model_checkpoint in /sdapi/v1/options or override_settings"
                .into(),
        ));
    }
    let jobs = jobs
        .into_iter()
        .map(|j| with_adapters(state, j.with_controls(controls.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let results = state
        .engine
        .run(jobs)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    api::generation_response(request, &results)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn txt2img(
    State(state): State<Shared>,
    Json(request): Json<api::Txt2Img>,
) -> Result<Json<Value>, ApiError> {
    let jobs = request.jobs()?;
    let controls = control_units(&state, &request.common, None).await?;
    let echo = api::Txt2Img {
        common: request.common.without_images(),
    };
    generate(&state, request.common.checkpoint(), jobs, controls, &echo).await
}

async fn img2img(
    State(state): State<Shared>,
    Json(request): Json<api::Img2Img>,
) -> Result<Json<Value>, ApiError> {
    let jobs = request.jobs()?;
    let init = jobs.first().and_then(|j| j.kind.source_image().cloned());
    let controls = control_units(&state, &request.common, init).await?;
    // The answer's `parameters` leave the (large) images out, as AUTOMATIC1111's do.
    let mut echo = request.clone();
    echo.init_images.clear();
    echo.mask = None;
    echo.common = request.common.without_images();
    generate(&state, request.common.checkpoint(), jobs, controls, &echo).await
}

#[derive(serde::Deserialize)]
struct ProgressQuery {
    #[serde(default)]
    skip_current_image: bool,
}

async fn progress(State(state): State<Shared>, Query(q): Query<ProgressQuery>) -> Json<Value> {
    let p = state.engine.progress();
    let (fraction, step, total, eta, image) = match &p.current {
        Some(c) if c.total > 0 => {
            let fraction = c.step as f64 / c.total as f64;
            let elapsed = c.started.elapsed().as_secs_f64();
            let eta = if c.step > 0 {
                elapsed / c.step as f64 * (c.total - c.step) as f64
            } else {
                0.0
            };
            let image = if q.skip_current_image {
                None
            } else {
                c.preview.as_ref().and_then(|img| {
                    let mut out = vec![];
                    ::image::codecs::png::PngEncoder::new(&mut out)
                        .write_image(
                            &img.pixels,
                            img.width as u32,
                            img.height as u32,
                            ::image::ExtendedColorType::Rgb8,
                        )
                        .ok()?;
                    Some(api::encode_base64(&out))
                })
            };
            (fraction, c.step, c.total, eta, image)
        }
        _ => (0.0, 0, 0, 0.0, None),
    };
    Json(json!({
        "progress": fraction,
        "eta_relative": eta,
        "state": {
            "skipped": false,
            "interrupted": p.interrupted,
            "job": "",
            "job_count": p.queued,
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": step,
            "sampling_steps": total,
        },
        "current_image": image,
        "textinfo": null,
    }))
}

use ::image::ImageEncoder as _;

async fn interrupt(State(state): State<Shared>) -> Json<Value> {
    state.engine.interrupt();
    Json(json!({}))
}

async fn sd_models(State(state): State<Shared>) -> Json<Value> {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            json!({
                "title": m.title(),
                "model_name": m.name,
                "hash": m.hash,
                "sha256": null,
                // The file's name only: where the server keeps its files is its own business.
                "filename": m.path.file_name().map(|f| f.to_string_lossy().into_owned()),
                "config": null,
            })
        })
        .collect();
    Json(Value::Array(models))
}

fn loaded_title(state: &AppState) -> Option<String> {
    match state.engine.model() {
        ModelState::Loaded(info) => Some(
            state
                .models
                .iter()
                .find(|m| m.path == info.path)
                .map(ServedModel::title)
                .unwrap_or_else(|| crate::png_info::model_name(&info.path).unwrap_or_default()),
        ),
        _ => None,
    }
}

async fn get_options(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "sd_model_checkpoint": loaded_title(&state),
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
    }))
}

async fn set_options(
    State(state): State<Shared>,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(name) = body.get("sd_model_checkpoint").and_then(Value::as_str) {
        switch_model(&state, name).await?;
    }
    Ok(Json(Value::Null))
}

async fn samplers() -> Json<Value> {
    Json(api::samplers())
}

#[derive(serde::Deserialize)]
struct PngInfoRequest {
    image: String,
}

async fn png_info(Json(request): Json<PngInfoRequest>) -> Result<Json<Value>, ApiError> {
    let bytes = api::decode_base64(&request.image)?;
    let Some(info) = crate::png_info::parse_image(&bytes) else {
        return Ok(Json(json!({"info": "", "items": {}, "parameters": {}})));
    };
    let text = crate::png_info::a1111::format(&info.parameters);
    let items: serde_json::Map<String, Value> = info
        .parameters
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut parameters = items.clone();
    parameters.insert("Prompt".into(), info.parameters.prompt.clone().into());
    parameters.insert(
        "Negative prompt".into(),
        info.parameters.negative_prompt.clone().into(),
    );
    Ok(Json(
        json!({"info": text, "items": items, "parameters": parameters}),
    ))
}

async fn health(State(state): State<Shared>, headers: HeaderMap) -> Json<Value> {
    let p = state.engine.progress();
    let known = state
        .api_key
        .as_deref()
        .is_none_or(|key| authorized(&headers, key));
    if !known {
        return Json(json!({
            "status": "ok",
            "server": "pentimento",
            "busy": p.current.is_some() || p.queued > 0,
        }));
    }
    let loading = match state.engine.model() {
        ModelState::Loading(path) => crate::png_info::model_name(&path),
        _ => None,
    };
    Json(json!({
        "status": "ok",
        // Tells our app it may use what only we understand (RePaint passes, timestep spacing).
        "server": "pentimento",
        "version": env!("CARGO_PKG_VERSION"),
        "model": loaded_title(&state),
        "loading": loading,
        "busy": p.current.is_some() || p.queued > 0,
        "queued": p.queued,
    }))
}
