//! The HTTP API on actix-web: telemetry in, decisions, events, the prior,
//! health and metrics out (docs/live.md documents every endpoint).
//!
//! Handlers never govern: a telemetry request becomes one [`Message`] on the
//! core's bounded queue (a full queue is a 429 at once) and the handler
//! waits for the core's answer, which comes only after the packets are in
//! the chronicle. Reads come from the [`Board`], which holds only committed
//! decisions.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use crossbeam_channel::{Sender, TrySendError};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::board::Board;
use crate::core::{Durability, Message, Reply, Request};
use crate::supervisor::{Answer, Event, Outcome, Packet};

/// Largest request body: 1 MiB.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Most packets in one JSON-array request.
pub const BATCH_PACKETS_MAX: usize = 1024;
/// Longest long poll a client may ask for.
pub const WAIT_SECONDS_MAX: u64 = 60;
/// Seconds a client is told to wait after a 429 or 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// Interval of the event stream's keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every handler shares.
pub struct Shared {
    /// The core's queue.
    pub queue: Sender<Message>,
    /// Committed decisions.
    pub board: Arc<Board>,
    /// SHA-256 of the token clients must present, when one is configured.
    pub token_sha256: Option<[u8; 32]>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// What acknowledgements promise.
    pub durability: Durability,
}

/// Registers every route.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/telemetry", web::post().to(telemetry))
        .route("/v1/jobs/{job}/decision", web::get().to(decision))
        .route("/v1/events", web::get().to(events))
        .route("/v1/prior", web::get().to(prior))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics_text));
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message.into()}))
}

fn retry_later(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()))
        .json(json!({"error": message, "retry_after_s": RETRY_AFTER_SECONDS}))
}

/// Compares the presented bearer token's digest with the configured one in
/// constant time.
fn authorized(request: &HttpRequest, shared: &Shared) -> bool {
    let Some(expected) = &shared.token_sha256 else { return true };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    digest.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "a valid bearer token is required (Authorization: Bearer TOKEN)"}))
}

/// The packets of a body: the elements of a JSON array (each its exact
/// text), or the whole body as one packet — which the validator rejects
/// with a reason if it is not a packet.
fn split(body: Bytes) -> Result<Vec<Packet>, String> {
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace()).map_or(&body[..0], |i| &body[i..]);
    if trimmed.first() == Some(&b'[') {
        if let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
            if items.len() > BATCH_PACKETS_MAX {
                return Err(format!("{} packets in one request, at most {BATCH_PACKETS_MAX}", items.len()));
            }
            return Ok(items.iter().map(|raw| Packet::Text(raw.get().to_string())).collect());
        }
    }
    Ok(vec![Packet::from_bytes(body.to_vec())])
}

/// `t` in nanoseconds since the Unix epoch (negative before it). A clock
/// past the year 2262 saturates: the value is a person's hint, never an
/// input of a decision.
fn unix_nanos(t: SystemTime) -> i64 {
    let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => clamp(after.as_nanos()),
        Err(before) => -clamp(before.duration().as_nanos()),
    }
}

/// Queues `packets` for the core and waits for its answer. `Err` is the
/// response to send instead (429 on a full queue, 503 when stopping).
pub async fn submit(queue: &Sender<Message>, packets: Vec<Packet>) -> Result<Reply, &'static str> {
    let (reply, answer) = oneshot::channel();
    #[allow(clippy::disallowed_methods)] // Arrival time for the latency metric; never handed to an actor.
    let received = Instant::now();
    #[allow(clippy::disallowed_methods)] // Arrival time for the chronicle's people-only arrival records.
    let arrived_unix_nanos = unix_nanos(SystemTime::now());
    let request = Request { packets, reply, received, arrived_unix_nanos };
    match queue.try_send(Message::Packets(request)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            crate::metrics::overloaded();
            return Err("overloaded");
        }
        Err(TrySendError::Disconnected(_)) => return Err("stopping"),
    }
    answer.await.map_err(|_| "stopping")
}

async fn read_body(mut payload: web::Payload) -> Result<Bytes, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > BODY_BYTES_MAX {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {BODY_BYTES_MAX} bytes (1 MiB); send fewer packets per request"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn telemetry(request: HttpRequest, payload: web::Payload, shared: Data<Shared>) -> HttpResponse {
    if !authorized(&request, &shared) {
        return unauthorized();
    }
    if !shared.board.is_ready() {
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is starting or stopping");
    }
    let too_long = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > BODY_BYTES_MAX as u64);
    if too_long {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {BODY_BYTES_MAX} bytes (1 MiB)"));
    }
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let packets = match split(body) {
        Ok(packets) => packets,
        Err(message) => return error(StatusCode::PAYLOAD_TOO_LARGE, message),
    };
    let durability = shared.durability.as_str();
    match submit(&shared.queue, packets).await {
        Err("overloaded") => retry_later(StatusCode::TOO_MANY_REQUESTS, "the ingress queue is full"),
        Err(_) => retry_later(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is stopping"),
        Ok(Err(message)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the supervisor stopped: {message}")),
        Ok(Ok(answers)) if is_array => {
            let bodies: Vec<Json> = answers.iter().map(|a| a.to_json(durability)).collect();
            HttpResponse::Ok().json(bodies)
        }
        Ok(Ok(answers)) => single(&answers, durability),
    }
}

fn single(answers: &[Answer], durability: &str) -> HttpResponse {
    let Some(answer) = answers.first() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no answer for the packet");
    };
    let status = match answer.outcome {
        Outcome::Conflict => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    HttpResponse::build(status).json(answer.to_json(durability))
}

#[derive(serde::Deserialize)]
struct PollQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

async fn decision(
    request: HttpRequest,
    job: web::Path<String>,
    query: web::Query<PollQuery>,
    shared: Data<Shared>,
) -> HttpResponse {
    if !authorized(&request, &shared) {
        return unauthorized();
    }
    let after = query.after.unwrap_or(0);
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(WAIT_SECONDS_MAX));
    let mut ticks = shared.board.ticks();
    let mut shutdown = shared.board.shutdown_signal();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = shared.board.lock().jobs.get(job.as_str()).cloned();
        match current {
            Some(decision) if decision.tick > after || query.after.is_none() => {
                return HttpResponse::Ok().json(decision.json)
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return match current {
                // Nothing newer than `after` within the wait.
                Some(_) => HttpResponse::NotModified().finish(),
                None => error(StatusCode::NOT_FOUND, format!("no packet of job `{}` has been admitted", job.as_str())),
            };
        }
        tokio::select! {
            _ = ticks.changed() => {}
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn parse_event_id(text: &str) -> Option<(u64, u64)> {
    let (tick, seq) = text.trim().split_once('.')?;
    Some((tick.parse().ok()?, seq.parse().ok()?))
}

fn sse(event: &Event) -> Bytes {
    Bytes::from(format!("id: {}\nevent: {}\ndata: {}\n\n", event.id(), event.topic, event.data))
}

async fn events(request: HttpRequest, shared: Data<Shared>) -> HttpResponse {
    if !authorized(&request, &shared) {
        return unauthorized();
    }
    let last = request.headers().get("Last-Event-ID").and_then(|v| v.to_str().ok()).and_then(parse_event_id);
    // Subscribe before reading the backlog, so nothing falls between them.
    let live = shared.board.subscribe();
    let mut first: Vec<Bytes> = Vec::new();
    let mut sent = (0, 0);
    if let Some(last) = last {
        sent = last;
        let state = shared.board.lock();
        let oldest = state.events.front().map(|e| (e.tick, e.seq));
        if oldest.is_some_and(|oldest| oldest > last) && state.events_published > state.events.len() as u64 {
            let oldest = oldest.map(|(t, s)| format!("{t}.{s}")).unwrap_or_default();
            let gap = json!({"after": format!("{}.{}", last.0, last.1), "oldest_kept": oldest});
            first.push(Bytes::from(format!("event: gap\ndata: {gap}\n\n")));
        }
        for event in state.events.iter().filter(|e| (e.tick, e.seq) > last) {
            first.push(sse(event));
            sent = (event.tick, event.seq);
        }
    }
    first.insert(0, Bytes::from_static(b": metagov events\n\n"));
    let state = (first.into_iter(), live, sent, shared.board.shutdown_signal(), false);
    let stream = futures_util::stream::unfold(
        state,
        |(mut backlog, mut live, mut sent, mut shutdown, done)| async move {
            if done {
                return None;
            }
            if let Some(bytes) = backlog.next() {
                return Some((Ok::<_, actix_web::Error>(bytes), (backlog, live, sent, shutdown, false)));
            }
            loop {
                if *shutdown.borrow() {
                    let bye = Bytes::from_static(b"event: shutdown\ndata: {}\n\n");
                    return Some((Ok(bye), (backlog, live, sent, shutdown, true)));
                }
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(event) if (event.tick, event.seq) > sent => {
                            sent = (event.tick, event.seq);
                            return Some((Ok(sse(&event)), (backlog, live, sent, shutdown, false)));
                        }
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            // Too slow: end the stream; the client resumes from its
                            // last id and gets the backlog.
                            let lagged = Bytes::from(format!("event: lagged\ndata: {{\"missed\": {missed}}}\n\n"));
                            return Some((Ok(lagged), (backlog, live, sent, shutdown, true)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = shutdown.changed() => continue,
                    _ = tokio::time::sleep(KEEP_ALIVE) => {
                        return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (backlog, live, sent, shutdown, false)));
                    }
                }
            }
        },
    );
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream)
}

async fn prior(request: HttpRequest, shared: Data<Shared>) -> HttpResponse {
    if !authorized(&request, &shared) {
        return unauthorized();
    }
    let prior = shared.board.lock().prior.clone();
    match prior {
        Some(prior) => HttpResponse::Ok().json(prior),
        None => error(StatusCode::NOT_FOUND, "no prior update yet"),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(shared: Data<Shared>) -> HttpResponse {
    if shared.board.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "tick": shared.board.lock().tick}))
    } else {
        retry_later(StatusCode::SERVICE_UNAVAILABLE, "not ready: rebuilding state or stopping")
    }
}

async fn metrics_text(request: HttpRequest, shared: Data<Shared>) -> HttpResponse {
    if !authorized(&request, &shared) {
        return unauthorized();
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(shared.metrics.render())
}
