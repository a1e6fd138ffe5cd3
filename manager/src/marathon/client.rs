//! The Marathon edge: lists (`/v2/apps?embed=apps.tasks`, `/v2/pods/::status`) and the event
//! stream, over a list of Marathon URLs (HA: a failure moves to the next). Leader redirects
//! are followed by ureq; the stream's stall timeout is ureq's per-read timeout.

use std::collections::VecDeque;
use std::io::{BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

use super::model::{AppList, Event, TaskView, decode_pods, pod_tasks};

/// One snapshot of what Marathon runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub tasks: Vec<TaskView>,
    /// Why the listing is not the whole truth (tasks not embedded, counts that disagree);
    /// empty when it is. An incomplete listing may join, never delete.
    pub incomplete: Vec<String>,
    /// The apps with a `VIP_<n>` port label, for the load balancers (`crate::vip`).
    pub services: Vec<super::model::ServiceApp>,
    /// The apps marathon-lb exposes (`HAPROXY_GROUP` in their own labels).
    pub marathon_lb: Vec<String>,
}
use super::sse::{SseEvent, SseParser};

use crate::servers::Servers;

/// The two event types the watcher acts on; Marathon matches `event_type` exactly (REST API
/// docs, `GET /v2/events`).
pub const EVENTS_PATH: &str = "/v2/events?event_type=status_update_event&event_type=instance_changed_event&event_type=health_status_changed_event";

#[derive(Debug, Clone, thiserror::Error)]
pub enum MarathonError {
    #[error("Marathon {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("Marathon {url}: {msg}")]
    Transport { url: String, msg: String },
    #[error("Marathon {url}: undecodable answer: {msg}")]
    Decode { url: String, msg: String },
    #[error("Marathon event stream silent for longer than the stall timeout")]
    Stalled,
    /// The TLS handshake failed (certificate not trusted by `[marathon] ca-file`, ...).
    #[error("Marathon {0}")]
    Tls(String),
    /// No credentials to send: the login was refused or its service is unreachable.
    #[error("Marathon login: {0}")]
    Auth(crate::auth::AuthError),
}

impl MarathonError {
    /// Marathon (or the login in front of it) refused who we say we are: a 401/403 after the
    /// client's one renewal, or a refused login. Not an outage: only a configuration change
    /// helps.
    pub fn is_refused_credentials(&self) -> bool {
        match self {
            MarathonError::Status { status, .. } => matches!(status, 401 | 403),
            MarathonError::Auth(a) => a.is_permanent(),
            _ => false,
        }
    }
}

/// How the manager proves who it is to Marathon.
#[derive(Clone)]
pub enum MarathonAuth {
    None,
    /// `Authorization: token=<t>` (DC/OS): a configured token or a service-account login's.
    Token(Arc<dyn crate::auth::TokenSource>),
    /// `Authorization: Basic <user:password>` (Marathon's `--http_credentials`).
    Basic {
        username: String,
        password: String,
    },
}

impl MarathonAuth {
    /// The header value to send, and the token it carries (for a renewal after a 401).
    fn header(&self) -> Result<Option<(String, Option<String>)>, MarathonError> {
        use base64::Engine as _;
        Ok(match self {
            MarathonAuth::None => None,
            MarathonAuth::Token(src) => src
                .token()
                .map_err(MarathonError::Auth)?
                .map(|t| (format!("token={t}"), Some(t))),
            MarathonAuth::Basic { username, password } => Some((
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ),
                None,
            )),
        })
    }

    /// The peer refused `header`'s token: true when asking again can give another.
    fn refused(&self, header: &Option<(String, Option<String>)>) -> bool {
        match (self, header) {
            (MarathonAuth::Token(src), Some((_, Some(t)))) => src.refused(t),
            _ => false,
        }
    }
}

/// A failed request: TLS failure or no answer.
fn transport_error(url: &str, e: &ureq::Error) -> MarathonError {
    match contrail_mesos_api::tls::failure(e) {
        Some(reason) => MarathonError::Tls(contrail_mesos_api::tls::describe(url, &reason)),
        None => MarathonError::Transport {
            url: url.to_owned(),
            msg: e.to_string(),
        },
    }
}

/// An open event stream.
pub trait EventStream: Send {
    /// The next event; `Ok(None)` when the server closed the stream.
    fn next_event(&mut self) -> Result<Option<Event>, MarathonError>;
}

pub trait MarathonApi: Send + Sync {
    /// Every app task and pod container Marathon knows, in one snapshot.
    fn list_tasks(&self) -> Result<Listing, MarathonError>;
    /// A cheap reachability check (`GET /ping`), for readiness.
    fn ping(&self) -> Result<(), MarathonError>;
    fn events(&self) -> Result<Box<dyn EventStream>, MarathonError>;
    /// Which URL is in use (logs, tests).
    fn current_url(&self) -> String;
    /// The stream from `current_url` failed after it was open (stalled, cut): the next
    /// connection should try another server of the list. A server that accepts connections
    /// and then hangs would otherwise be retried forever, since only a failed connect moves on.
    fn stream_failed(&self) {}
}

#[derive(Clone)]
pub struct HttpMarathonConfig {
    pub urls: Vec<String>,
    /// The `Authorization` header sent with every request, the event stream's included.
    pub auth: MarathonAuth,
    pub timeout: Duration,
    /// The stream is declared dead after this long without a byte (heartbeats come every 10 s).
    pub stall_timeout: Duration,
    /// Client TLS settings for `https://` URLs (`[marathon] ca-file`).
    pub tls: ureq::tls::TlsConfig,
}

pub struct HttpMarathon {
    cfg: HttpMarathonConfig,
    lists: ureq::Agent,
    stream: ureq::Agent,
    servers: Servers,
    /// The URL of the last stream opened (`stream_failed` moves past it).
    stream_url: std::sync::Mutex<String>,
}

impl HttpMarathon {
    pub fn new(cfg: HttpMarathonConfig) -> HttpMarathon {
        let lists: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(cfg.timeout))
            .max_redirects(5)
            .tls_config(cfg.tls.clone())
            .build()
            .into();
        // No global or body timeout on the stream: it is meant to stay open. Only the silence
        // between two reads is bounded.
        let stream: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(cfg.timeout))
            .timeout_recv_response(Some(cfg.timeout))
            .timeout_per_read(Some(cfg.stall_timeout))
            .max_redirects(5)
            .tls_config(cfg.tls.clone())
            .build()
            .into();
        HttpMarathon {
            servers: Servers::new(cfg.urls.clone()),
            cfg,
            lists,
            stream,
            stream_url: std::sync::Mutex::new(String::new()),
        }
    }

    fn base(&self) -> String {
        self.servers.base()
    }

    /// After a failure of the server `url` went to.
    fn rotate(&self, url: &str) {
        self.servers.failed(url);
    }

    /// Sends with the credentials; after a 401 to a token from a login, renews it and sends
    /// once more (a second 401 is the answer).
    fn send_authed(
        &self,
        url: &str,
        request: impl Fn() -> ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> Result<ureq::http::Response<ureq::Body>, MarathonError> {
        let h = self.cfg.auth.header()?;
        let call = |h: &Option<(String, Option<String>)>| {
            let mut rb = request();
            if let Some((v, _)) = h {
                rb = rb.header("Authorization", v.as_str());
            }
            rb.call().map_err(|e| {
                self.rotate(url);
                transport_error(url, &e)
            })
        };
        let resp = call(&h)?;
        if resp.status().as_u16() == 401 && self.cfg.auth.refused(&h) {
            let h = self.cfg.auth.header()?;
            return call(&h);
        }
        Ok(resp)
    }

    /// `Ok(None)` on 404.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, MarathonError> {
        let Some((url, body)) = self.get_body(path)? else {
            return Ok(None);
        };
        // Streamed decode: no 10 MB body limit, no intermediate copy of a large app list.
        serde_json::from_reader(body)
            .map(Some)
            .map_err(|e| MarathonError::Decode {
                url,
                msg: e.to_string(),
            })
    }

    /// The URL and the body of a 200 answer, to be read as it arrives; `Ok(None)` on 404.
    fn get_body(
        &self,
        path: &str,
    ) -> Result<Option<(String, BufReader<impl std::io::Read + use<>>)>, MarathonError> {
        let url = format!("{}{path}", self.base());
        let resp = self.send_authed(&url, || {
            self.lists.get(&url).header("Accept", "application/json")
        })?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            self.rotate(&url);
            return Err(MarathonError::Status { url, status });
        }
        Ok(Some((url, BufReader::new(resp.into_body().into_reader()))))
    }
}

impl MarathonApi for HttpMarathon {
    fn list_tasks(&self) -> Result<Listing, MarathonError> {
        const APPS: &str = "/v2/apps?embed=apps.tasks";
        let (url, body) = self.get_body(APPS)?.ok_or_else(|| MarathonError::Status {
            url: format!("{}{APPS}", self.base()),
            status: 404,
        })?;
        // Decoded as it arrives into only the fields the reconciler reads.
        let apps = AppList::from_reader(body).map_err(|msg| MarathonError::Decode { url, msg })?;
        let incomplete = apps.incomplete();
        let services = apps.services();
        let marathon_lb = apps.marathon_lb_apps();
        // Marathon < 1.4 has no pods: its 404 means "no pods", not a failed listing.
        const PODS: &str = "/v2/pods/::status";
        let pods = match self.get_json::<serde_json::Value>(PODS)? {
            Some(v) => decode_pods(v).map_err(|msg| MarathonError::Decode {
                url: format!("{}{PODS}", self.base()),
                msg,
            })?,
            None => vec![],
        };
        let mut tasks: Vec<TaskView> = apps.tasks().collect();
        tasks.extend(pod_tasks(pods));
        Ok(Listing {
            tasks,
            incomplete,
            services,
            marathon_lb,
        })
    }

    fn ping(&self) -> Result<(), MarathonError> {
        let url = format!("{}/ping", self.base());
        let resp = self.send_authed(&url, || self.lists.get(&url))?;
        match resp.status().as_u16() {
            200 => Ok(()),
            status => {
                self.rotate(&url);
                Err(MarathonError::Status { url, status })
            }
        }
    }

    fn events(&self) -> Result<Box<dyn EventStream>, MarathonError> {
        let url = format!("{}{EVENTS_PATH}", self.base());
        // The stream carries the same credentials; a stream cut because its token expired
        // comes back here, and the 401 to the old token renews it.
        // Jetty compares each Accept header to "text/event-stream" exactly: nothing else.
        let resp = self.send_authed(&url, || {
            self.stream.get(&url).header("Accept", "text/event-stream")
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            self.rotate(&url);
            return Err(MarathonError::Status { url, status });
        }
        *self.stream_url.lock().unwrap_or_else(|p| p.into_inner()) = url;
        Ok(Box::new(HttpEventStream {
            reader: Box::new(resp.into_body().into_reader()),
            parser: SseParser::new(),
            pending: VecDeque::new(),
        }))
    }

    fn current_url(&self) -> String {
        self.base()
    }

    fn stream_failed(&self) {
        let url = self
            .stream_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.rotate(&url);
    }
}

struct HttpEventStream {
    reader: Box<dyn Read + Send>,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
}

impl EventStream for HttpEventStream {
    fn next_event(&mut self) -> Result<Option<Event>, MarathonError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(Event::parse(&e.event, &e.data)));
            }
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.pending.extend(self.parser.push(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(MarathonError::Stalled);
                }
                Err(e) => {
                    // ureq reports its own timeouts as io::Error with kind Other.
                    if e.to_string().to_ascii_lowercase().contains("timeout") {
                        return Err(MarathonError::Stalled);
                    }
                    return Err(MarathonError::Transport {
                        url: String::new(),
                        msg: e.to_string(),
                    });
                }
            }
        }
    }
}
