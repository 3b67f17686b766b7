//! The admin server: what the kubelet and the operator ask of the agent.
//!
//! * `GET /healthz` — 200 while the agent (and so the app) runs;
//! * `GET /readyz` — 200 while serving (and the app's own readiness URL, if
//!   configured, answers 2xx); 503 from the moment a drain begins;
//! * `GET /prestop` — for a `preStop: httpGet` hook: begins the drain, holds
//!   the request until the app may be signalled, answers 200 with the reason;
//!   with `admin.prestop_auth`, only for the bearer token;
//! * `GET /metrics` — Prometheus (OpenMetrics) text;
//! * `GET /status` — JSON: policy, phase, config summary, timeline;
//! * `GET /timeline.svg` — the timeline as a picture (see [`lameduck_picture`]);
//! * `PUT /policy` — a new policy component, when turned on: needs the
//!   bearer token; validated like any reload, answered 200 or 422.
//!
//! Its clients cannot make it grow or slow down the kubelet's probes:
//! see [`limits`].

mod limits;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use lameduck_core::ProbeValue;
use lameduck_core::record::Entry;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::inbox::{self, Message};
use crate::probes::{Get, Own};
use crate::reload::Reloader;
use crate::shared::{Shared, Status};
use lameduck_picture::{self as picture, Frame};

/// The server's view of the agent.
pub struct Admin {
    pub shared: Arc<Shared>,
    pub inbox: inbox::Sender,
    /// The app's own readiness endpoint, checked by `/readyz`.
    pub readiness: Option<Get>,
    /// The agent's own connections: the ones accepted here are counted.
    pub own: Own,
    /// What the picture knows beside the timeline.
    pub frame: Frame,
    /// What keeps the server small.
    pub limits: limits::Limits,
    /// `PUT /policy`, when on: its bearer token and where pushes go.
    pub push: Option<(String, Reloader)>,
    /// The bearer token `/prestop` requires, if any.
    pub prestop_token: Option<String>,
}

/// The largest policy `PUT /policy` takes (a JavaScript component is ~12 MB).
const MAX_POLICY: usize = 64 << 20;

type Reply = Response<Full<Bytes>>;

/// Serves on a thread and a runtime of its own, until the process exits:
/// whatever clients ask, building answers never takes the controller's time.
pub fn start(listener: std::net::TcpListener, admin: Admin) {
    std::thread::Builder::new()
        .name("lameduck-admin".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(serve(listener, Arc::new(admin)));
        })
        .expect("spawn the admin thread");
}

/// How long to pause accepting after an error (out of file descriptors):
/// the error would come back at once, and spin.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

async fn serve(listener: std::net::TcpListener, admin: Arc<Admin>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a non-blocking listener");
    loop {
        // Accepted only with a place to serve it: more wait in the queue.
        let place = admin.limits.place().await;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(target: "lameduck", "admin server: accept: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Not the app's traffic: `connections` probes take it off their accepts.
        admin.own.note_admin_accept();
        let admin = admin.clone();
        tokio::spawn(async move {
            let _place = place;
            let turns = limits::Turns::default();
            let service = {
                let (admin, turns) = (admin.clone(), turns.clone());
                hyper::service::service_fn(move |req| {
                    let (admin, turns) = (admin.clone(), turns.clone());
                    async move { Ok::<_, Infallible>(admin.handle(req, &turns).await) }
                })
            };
            let io = hyper_util::rt::TokioIo::new(limits::Stalling::new(stream));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits::HEAD_TIMEOUT)
                .serve_connection(io, service)
                .await;
            // The heavy turns this connection took are given back here,
            // once its answers are written (or its reader dropped).
            drop(turns);
        });
    }
}

impl Admin {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, turns: &limits::Turns) -> Reply {
        let heavy = matches!(
            (req.method(), req.uri().path()),
            (&Method::GET, "/metrics" | "/status" | "/timeline.svg") | (&Method::PUT, "/policy")
        );
        let mut reply = if heavy && !self.limits.heavy(turns) {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: other answers are being written; try again\n",
            )
        } else {
            self.clone().route(req).await
        };
        if heavy {
            // The connection ends with this answer, and gives its turn back
            // (a client turned away holds no place either).
            reply.headers_mut().insert(
                hyper::header::CONNECTION,
                "close".parse().expect("a header value"),
            );
        }
        reply
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => self.readyz(&req).await,
            (&Method::GET, "/prestop") => match &self.prestop_token {
                Some(token) if !authorized(&req, token) => unauthorized(),
                _ => self.prestop().await,
            },
            (&Method::GET, "/metrics") => Response::builder()
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(self.shared.metrics.encode())))
                .expect("a valid response"),
            (&Method::GET, "/status") => self.built(Admin::status).await,
            (&Method::GET, "/timeline.svg") => self.built(Admin::picture).await,
            (&Method::PUT, "/policy") => self.push(req).await,
            (_, "/healthz" | "/readyz" | "/prestop" | "/metrics" | "/status" | "/timeline.svg") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
            }
            (_, "/policy") => text(StatusCode::METHOD_NOT_ALLOWED, "use PUT\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn readyz(&self, req: &Request<Incoming>) -> Reply {
        if !self.shared.ready() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
        }
        // The readiness URL led back here (by a name, a proxy): answering
        // by asking it again would never end.
        let asked_by_itself = req
            .headers()
            .get("user-agent")
            .is_some_and(|agent| agent == crate::probes::USER_AGENT);
        if let Some(readiness) = self.readiness.as_ref().filter(|_| !asked_by_itself) {
            match readiness.once(std::time::Duration::from_secs(1)).await {
                ProbeValue::Http(r) if (200..300).contains(&r.status) => {}
                ProbeValue::Http(r) => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("the app answers {}\n", r.status),
                    );
                }
                other => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("the app: {other:?}\n"),
                    );
                }
            }
        }
        text(StatusCode::OK, "ready\n")
    }

    async fn prestop(&self) -> Reply {
        let _held = self.shared.prestop_held();
        let (reply, answer) = oneshot::channel();
        if self.inbox.send(Message::PreStop(reply)).is_err() {
            return text(StatusCode::OK, "the agent is stopping\n");
        }
        match answer.await {
            Ok(why) => text(StatusCode::OK, &format!("{why}\n")),
            Err(_) => text(StatusCode::OK, "the agent is stopping\n"),
        }
    }

    async fn push(&self, req: Request<Incoming>) -> Reply {
        use http_body_util::{BodyExt, Limited};
        let Some((token, reloader)) = &self.push else {
            return text(
                StatusCode::NOT_FOUND,
                "PUT /policy is off (admin.policy_push)\n",
            );
        };
        if !authorized(&req, token) {
            return unauthorized();
        }
        let bytes = match Limited::new(req.into_body(), MAX_POLICY).collect().await {
            Ok(body) => body.to_bytes().to_vec(),
            Err(e) => return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("{e}\n")),
        };
        // Answered once the policy decides: `/status` says so by then.
        match reloader.push(bytes).await {
            Ok(identity) => text(StatusCode::OK, &format!("{identity} is live\n")),
            Err(reason) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("refused: {reason}\n"),
            ),
        }
    }

    /// The status and the timeline: the entries are kept as JSON already,
    /// and shared, not copied, until written here.
    fn status(&self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            status: Status,
            ready: bool,
            timeline_dropped: u64,
            timeline: Vec<&'a RawValue>,
        }
        let kept = self.shared.timeline.kept();
        let body = Body {
            status: self.shared.status(),
            ready: self.shared.ready(),
            timeline_dropped: kept.dropped,
            timeline: kept.entries.iter().map(|e| &**e).collect(),
        };
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&body).expect("the status serializes"),
            )))
            .expect("a valid response")
    }

    /// The timeline drawn, from the bounded copy `/status` serves.
    /// Builds a heavy answer on a blocking thread: however long it takes,
    /// accepts and the probes' answers go on here meanwhile.
    async fn built(self: Arc<Self>, build: fn(&Admin) -> Reply) -> Reply {
        tokio::task::spawn_blocking(move || build(&self))
            .await
            .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")))
    }

    fn picture(&self) -> Reply {
        let kept = self.shared.timeline.kept();
        let entries: Vec<Entry> = kept
            .entries
            .iter()
            .filter_map(|e| Entry::from_json(serde_json::from_str(e.get()).ok()?).ok()?)
            .collect();
        Response::builder()
            .header("content-type", "image/svg+xml")
            .body(Full::new(Bytes::from(picture::render(
                &entries, self.frame,
            ))))
            .expect("a valid response")
    }
}

fn text(status: StatusCode, body: &str) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// Whether `req` carries `Authorization: Bearer <token>`.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    same(given.as_bytes(), token.as_bytes())
}

fn unauthorized() -> Reply {
    text(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required\n",
    )
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
