//! Marathon stand-in (as Marathon's REST API docs and its Jetty event servlet behave): `GET /v2/apps?embed=apps.tasks`,
//! `GET /v2/pods/::status`, `GET /v2/tasks`, and the `/v2/events` stream as Jetty's
//! `EventSourceServlet` serves it: `Accept: text/event-stream` compared exactly (else 405),
//! `Connection: close` with no chunking, CRLF frames, `event_stream_attached` first, a bare
//! `\r` then `\n` heartbeat (flushed separately), `event_type` filters, a redirect to the leader
//! when this instance is not the leader, and a subscriber more than `max_outstanding` events
//! behind is dropped. Plain HTTP/1.1 over `std::net`, one thread per connection, so every
//! byte on the wire is under the test's control.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::vnc::store::write_json;

/// A task as the stand-in keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTask {
    pub app_id: String,
    pub id: String,
    pub host: String,
    pub ips: Vec<String>,
    pub state: String,
}

/// A pod instance: containers share the instance's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePodInstance {
    pub pod_id: String,
    pub id: String,
    pub host: String,
    pub ips: Vec<String>,
    /// (container task id, Mesos state)
    pub containers: Vec<(String, String)>,
}

struct Sub {
    frames: Mutex<VecDeque<Vec<u8>>>,
    cv: Condvar,
    closed: AtomicBool,
    filter: Vec<String>,
}

#[derive(Default)]
struct State {
    apps: BTreeMap<String, FakeTask>,
    pods: BTreeMap<String, FakePodInstance>,
    subs: Vec<Arc<Sub>>,
    /// App definitions (`POST /v2/apps` bodies): their `portDefinitions`, `container`,
    /// `healthChecks` and `labels` are served in the app list, as Marathon does.
    specs: BTreeMap<String, Value>,
    /// Health-check results per task: `alive` of its (one) health check.
    health: BTreeMap<String, bool>,
}

/// The app-definition fields the list carries through.
const SPEC_FIELDS: [&str; 5] = [
    "portDefinitions",
    "container",
    "healthChecks",
    "labels",
    "networks",
];

/// Settings read on every request, so tests can flip them while it runs.
pub struct Knobs {
    /// `Some(url)`: not the leader; `/v2/events` redirects there.
    pub leader: Mutex<Option<String>>,
    /// No heartbeats (a stalled stream).
    pub silent: AtomicBool,
    pub heartbeat: Mutex<Duration>,
    pub max_outstanding: Mutex<usize>,
    /// Requests to `/v2/apps` answered so far.
    pub app_lists: AtomicU64,
    /// Event stream connections accepted (200) so far.
    pub stream_connects: AtomicU64,
    /// Event stream requests refused with 405 (bad Accept).
    pub refused: AtomicU64,
    /// The next this many `/v2/apps` answers list no app at all (a restarting Marathon, an
    /// ACL that hides every app).
    pub empty_lists: AtomicU64,
    /// `/v2/apps` leaves out the embedded `tasks` (counts still say how many run).
    pub omit_tasks: AtomicBool,
    /// `/v2/pods/::status` answers 404, as Marathon < 1.4 (no pods) does.
    pub no_pods: AtomicBool,
    /// The next this many event streams are answered 200 and closed before any event.
    pub close_next_streams: AtomicU64,
    /// Run once by the next `/v2/apps`, after its answer is computed and before it is sent.
    pub after_next_list: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Handles the write routes (`POST /v2/apps`, `PUT`/`DELETE /v2/apps/<id>`, pods...),
    /// which need a scheduler behind them (the devstack installs one).
    pub writes: Mutex<Option<WriteHandler>>,
    /// When set, every request's `Authorization` header (`""` when absent) must satisfy it,
    /// else 401; an open event stream whose header stops satisfying it is cut (its token
    /// expired), as DC/OS does with a stream it no longer authorizes.
    pub auth: Mutex<Option<crate::login::Validator>>,
    /// Requests refused with 401 so far.
    pub unauthorized: AtomicU64,
}

/// `(method, path, body) -> (status, JSON body)` for requests the read side does not serve.
pub type WriteHandler = Arc<dyn Fn(&str, &str, &str) -> (u16, Value) + Send + Sync>;

pub struct MarathonServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    pub knobs: Arc<Knobs>,
    stop: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_iso() -> String {
    "2026-11-23T09:00:00.000Z".into()
}

impl MarathonServer {
    pub fn start() -> anyhow::Result<MarathonServer> {
        Self::start_on("127.0.0.1:0")
    }

    pub fn start_on(bind: &str) -> anyhow::Result<MarathonServer> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State::default()));
        let knobs = Arc::new(Knobs {
            leader: Mutex::new(None),
            silent: AtomicBool::new(false),
            heartbeat: Mutex::new(Duration::from_secs(10)),
            max_outstanding: Mutex::new(1024),
            app_lists: AtomicU64::new(0),
            stream_connects: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            empty_lists: AtomicU64::new(0),
            omit_tasks: AtomicBool::new(false),
            no_pods: AtomicBool::new(false),
            after_next_list: Mutex::new(None),
            close_next_streams: AtomicU64::new(0),
            writes: Mutex::new(None),
            auth: Mutex::new(None),
            unauthorized: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, kn, sp) = (state.clone(), knobs.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (st, kn, sp) = (st.clone(), kn.clone(), sp.clone());
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            serve(s, &st, &kn, &sp);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(MarathonServer {
            addr,
            state,
            knobs,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds (or replaces) a running app task and emits its `status_update_event`.
    pub fn add_task(&self, app_id: &str, task_id: &str, host: &str, ips: &[&str], state: &str) {
        let t = FakeTask {
            app_id: app_id.into(),
            id: task_id.into(),
            host: host.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
        };
        lock(&self.state).apps.insert(task_id.into(), t.clone());
        self.emit_status(&t);
    }

    /// Adds a task to the lists without any event (as if the event was missed).
    pub fn add_task_silently(
        &self,
        app_id: &str,
        task_id: &str,
        host: &str,
        ips: &[&str],
        state: &str,
    ) {
        let t = FakeTask {
            app_id: app_id.into(),
            id: task_id.into(),
            host: host.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
        };
        lock(&self.state).apps.insert(task_id.into(), t);
    }

    /// Moves a task to a new state and emits the event; terminal states leave the lists.
    pub fn set_task_state(&self, task_id: &str, state: &str) {
        let t = {
            let mut s = lock(&self.state);
            let Some(t) = s.apps.get_mut(task_id) else {
                return;
            };
            t.state = state.into();
            let t = t.clone();
            if is_terminal(state) {
                s.apps.remove(task_id);
                s.health.remove(task_id);
            }
            t
        };
        self.emit_status(&t);
    }

    /// Stores an app's definition: its ports (with their labels), container, health checks
    /// and labels appear in `/v2/apps`, also before any task runs.
    pub fn set_app_definition(&self, app_id: &str, def: &Value) {
        let mut kept = serde_json::Map::new();
        for k in SPEC_FIELDS {
            if let Some(v) = def.get(k) {
                kept.insert(k.to_owned(), v.clone());
            }
        }
        lock(&self.state)
            .specs
            .insert(app_id.to_owned(), Value::Object(kept));
    }

    /// Forgets an app's definition (the app was destroyed).
    pub fn remove_app_definition(&self, app_id: &str) {
        lock(&self.state).specs.remove(app_id);
    }

    /// Records a health-check result for a task (`healthCheckResults` in the list) and emits
    /// `health_status_changed_event` (Marathon event bus docs).
    pub fn set_task_health(&self, task_id: &str, alive: bool) {
        let app = {
            let mut s = lock(&self.state);
            let Some(t) = s.apps.get(task_id) else {
                return;
            };
            let app = t.app_id.clone();
            s.health.insert(task_id.to_owned(), alive);
            app
        };
        self.emit(
            "health_status_changed_event",
            &json!({"appId": app, "taskId": task_id, "instanceId": task_id, "version": now_iso(),
                "alive": alive, "eventType": "health_status_changed_event", "timestamp": now_iso()}),
        );
    }

    pub fn kill_task(&self, task_id: &str) {
        self.set_task_state(task_id, "TASK_KILLED");
    }

    /// Removes a task from the lists without any event (a missed event).
    pub fn remove_task_silently(&self, task_id: &str) {
        lock(&self.state).apps.remove(task_id);
    }

    pub fn add_pod_instance(&self, p: FakePodInstance) {
        lock(&self.state).pods.insert(p.id.clone(), p);
    }

    /// Removes a pod instance and emits `instance_changed_event` with `condition`.
    pub fn end_pod_instance(&self, instance_id: &str, condition: &str) {
        let p = lock(&self.state).pods.remove(instance_id);
        let run_spec = p.map(|p| p.pod_id).unwrap_or_default();
        self.emit(
            "instance_changed_event",
            &json!({"instanceId": instance_id, "condition": condition, "runSpecId": run_spec, "agentId": null,
                "host": null, "runSpecVersion": now_iso(), "timestamp": now_iso(), "eventType": "instance_changed_event"}),
        );
    }

    fn emit_status(&self, t: &FakeTask) {
        self.emit_status_update(&t.app_id, &t.id, &t.host, &t.ips, &t.state);
    }

    /// Emits a `status_update_event` (Marathon event bus docs) for any task, including pod containers,
    /// whose state the lists do not track.
    pub fn emit_status_update(
        &self,
        app_id: &str,
        task_id: &str,
        host: &str,
        ips: &[impl AsRef<str>],
        state: &str,
    ) {
        let ips: Vec<Value> = ips
            .iter()
            .map(|i| json!({"ipAddress": i.as_ref(), "protocol": "IPv4"}))
            .collect();
        self.emit(
            "status_update_event",
            &json!({"slaveId": "S0", "taskId": task_id, "taskStatus": state, "message": "", "appId": app_id,
                "host": host, "ipAddresses": ips, "ports": [], "version": now_iso(),
                "eventType": "status_update_event", "timestamp": now_iso()}),
        );
    }

    /// Sends one event to every subscriber whose filter accepts it; drops subscribers more
    /// than `max_outstanding` events behind.
    pub fn emit(&self, event_type: &str, payload: &Value) {
        let frame = format!("event: {event_type}\r\ndata: {payload}\r\n\r\n").into_bytes();
        let max = *lock(&self.knobs.max_outstanding);
        let s = lock(&self.state);
        for sub in &s.subs {
            if !sub.filter.is_empty() && !sub.filter.iter().any(|f| f == event_type) {
                continue;
            }
            let mut q = lock(&sub.frames);
            q.push_back(frame.clone());
            if q.len() > max {
                sub.closed.store(true, Ordering::SeqCst);
            }
            sub.cv.notify_all();
        }
    }

    /// Closes every event stream (as a Marathon restart or leader change does).
    pub fn drop_streams(&self) {
        let mut s = lock(&self.state);
        for sub in s.subs.drain(..) {
            sub.closed.store(true, Ordering::SeqCst);
            sub.cv.notify_all();
        }
    }

    pub fn subscribers(&self) -> usize {
        lock(&self.state)
            .subs
            .iter()
            .filter(|s| !s.closed.load(Ordering::SeqCst))
            .count()
    }

    pub fn set_leader(&self, leader: Option<&str>) {
        *lock(&self.knobs.leader) = leader.map(str::to_owned);
    }

    pub fn set_silent(&self, silent: bool) {
        self.knobs.silent.store(silent, Ordering::SeqCst);
    }

    pub fn set_heartbeat(&self, d: Duration) {
        *lock(&self.knobs.heartbeat) = d;
    }

    pub fn set_max_outstanding(&self, n: usize) {
        *lock(&self.knobs.max_outstanding) = n;
    }

    /// Serves Marathon's write routes with `handler` (see [`WriteHandler`]).
    pub fn set_write_handler(&self, handler: WriteHandler) {
        *lock(&self.knobs.writes) = Some(handler);
    }

    /// Accept only requests whose `Authorization` header satisfies `check` (`None` = any).
    pub fn require_auth(&self, check: Option<crate::login::Validator>) {
        *lock(&self.knobs.auth) = check;
    }

    pub fn tasks(&self) -> Vec<FakeTask> {
        lock(&self.state).apps.values().cloned().collect()
    }
}

impl Drop for MarathonServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.drop_streams();
    }
}

/// Marathon's terminal task states: the task leaves the lists. `TASK_LOST` and
/// `TASK_UNREACHABLE` are not (the instance is Unreachable and stays listed until expunged).
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// One app of `GET /v2/apps` as JSON text: its counts, then the fields of its definition
/// (one with the name of a count takes the count's place), then its tasks when embedded.
fn write_app(
    out: &mut Vec<u8>,
    id: &str,
    tasks: &[&FakeTask],
    spec: Option<&Value>,
    health: &BTreeMap<String, bool>,
    embed: bool,
) {
    // Marathon counts running and staged tasks; killing/unreachable ones are embedded but in
    // neither count.
    let count = |states: &[&str]| {
        tasks
            .iter()
            .filter(|t| states.contains(&t.state.as_str()))
            .count()
    };
    let mut head = serde_json::Map::new();
    head.insert("id".into(), json!(id));
    head.insert("instances".into(), json!(tasks.len()));
    head.insert(
        "networks".into(),
        json!([{"mode": "container", "name": "contrail-cni-plugin"}]),
    );
    head.insert("tasksRunning".into(), json!(count(&["TASK_RUNNING"])));
    head.insert(
        "tasksStaged".into(),
        json!(count(&["TASK_STAGING", "TASK_STARTING"])),
    );
    if let Some(Value::Object(spec)) = spec {
        for (k, v) in spec {
            head.insert(k.clone(), v.clone());
        }
    }
    if embed {
        // A placeholder in the key's place; the tasks are written there below.
        head.insert("tasks".into(), Value::Null);
        head.insert("deployments".into(), json!([]));
    }
    out.push(b'{');
    for (i, (k, v)) in head.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, k.as_str());
        out.push(b':');
        if embed && k == "tasks" {
            out.push(b'[');
            for (j, t) in tasks.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_task(out, t, health.get(&t.id).copied());
            }
            out.push(b']');
        } else {
            write_json(out, v);
        }
    }
    out.push(b'}');
}

/// One embedded task as JSON text, with its health-check result when it has one.
fn write_task(out: &mut Vec<u8>, t: &FakeTask, alive: Option<bool>) {
    out.extend_from_slice(br#"{"id":"#);
    write_json(out, &t.id);
    out.extend_from_slice(br#","appId":"#);
    write_json(out, &t.app_id);
    out.extend_from_slice(br#","host":"#);
    write_json(out, &t.host);
    out.extend_from_slice(br#","slaveId":"S0","state":"#);
    write_json(out, &t.state);
    out.extend_from_slice(br#","ipAddresses":["#);
    for (i, ip) in t.ips.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"ipAddress":"#);
        write_json(out, ip);
        out.extend_from_slice(br#","protocol":"IPv4"}"#);
    }
    out.extend_from_slice(br#"],"ports":[],"stagedAt":"#);
    write_json(out, &now_iso());
    if let Some(alive) = alive {
        out.extend_from_slice(br#","healthCheckResults":"#);
        let h = json!([{"alive": alive, "consecutiveFailures": if alive { 0 } else { 1 },
            "firstSuccess": now_iso(), "lastFailure": null, "lastSuccess": now_iso(),
            "lastFailureCause": null, "instanceId": t.id}]);
        write_json(out, &h);
    }
    out.push(b'}');
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str, extra: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = s.flush();
}

fn serve(mut s: TcpStream, state: &Mutex<State>, knobs: &Knobs, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut accepts = Vec::new();
    let mut content_length = 0usize;
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("accept") {
                accepts.push(v.trim().to_owned());
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = v.trim().to_owned();
            } else if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    if std::io::Read::read_exact(&mut r, &mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let leader_hdr = "X-Marathon-Leader: http://self\r\n";
    let check = lock(&knobs.auth).clone();
    if let Some(check) = &check
        && !check(&authorization)
    {
        knobs.unauthorized.fetch_add(1, Ordering::SeqCst);
        respond(
            &mut s,
            "401 Unauthorized",
            "application/json",
            r#"{"message":"Unauthorized access"}"#,
            "WWW-Authenticate: Basic realm=\"Mesosphere\"\r\n",
        );
        return;
    }
    match (method.as_str(), path) {
        ("GET", "/v2/apps") => {
            knobs.app_lists.fetch_add(1, Ordering::SeqCst);
            let st = lock(state);
            let mut apps: BTreeMap<&str, Vec<&FakeTask>> = BTreeMap::new();
            for id in st.specs.keys() {
                apps.entry(id).or_default();
            }
            for t in st.apps.values() {
                apps.entry(&t.app_id).or_default().push(t);
            }
            let embed =
                query.contains("embed=apps.tasks") && !knobs.omit_tasks.load(Ordering::SeqCst);
            let hide = knobs
                .empty_lists
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if hide {
                apps.clear();
            }
            // Written as JSON text straight from the tasks: a `Value` per task made the
            // listing of 100,000 tasks take seconds (docs/BENCHMARKS.md).
            let mut out = Vec::with_capacity(64 + st.apps.len() * 256);
            out.extend_from_slice(br#"{"apps":["#);
            for (i, (id, tasks)) in apps.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_app(&mut out, id, &tasks, st.specs.get(id), &st.health, embed);
            }
            out.extend_from_slice(b"]}");
            drop(st);
            // The listing is taken; whatever the hook does happens after it, before the
            // client has it (a listing that is already stale when it arrives).
            let hook = lock(&knobs.after_next_list).take();
            if let Some(h) = hook {
                h();
            }
            respond(
                &mut s,
                "200 OK",
                "application/json",
                &String::from_utf8(out).expect("JSON text is UTF-8"),
                leader_hdr,
            );
        }
        ("GET", "/v2/tasks") => {
            let st = lock(state);
            let tasks: Vec<Value> = st
                .apps
                .values()
                .map(|t| json!({"id": t.id, "appId": t.app_id, "host": t.host, "state": t.state,
                    "ipAddresses": t.ips.iter().map(|i| json!({"ipAddress": i, "protocol": "IPv4"})).collect::<Vec<_>>()}))
                .collect();
            respond(
                &mut s,
                "200 OK",
                "application/json",
                &json!({"tasks": tasks}).to_string(),
                leader_hdr,
            );
        }
        ("GET", "/ping") => respond(&mut s, "200 OK", "text/plain", "pong", ""),
        ("GET", "/v2/pods/::status") if knobs.no_pods.load(Ordering::SeqCst) => {
            respond(&mut s, "404 Not Found", "text/plain", "not found", "");
        }
        ("GET", "/v2/pods/::status") => {
            let st = lock(state);
            let mut by_pod: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
            for p in st.pods.values() {
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|(id, status)| json!({"name": id.rsplit('.').next().unwrap_or(""), "status": status,
                        "statusSince": now_iso(), "containerId": id, "endpoints": [], "lastUpdated": now_iso(), "lastChanged": now_iso()}))
                    .collect();
                by_pod.entry(&p.pod_id).or_default().push(
                    json!({"id": p.id, "status": "STABLE", "statusSince": now_iso(),
                    "agentHostname": p.host, "networks": [{"name": "contrail-cni-plugin", "addresses": p.ips}],
                    "containers": containers, "specReference": "", "lastUpdated": now_iso(), "lastChanged": now_iso()}),
                );
            }
            let body: Vec<Value> = by_pod
                .into_iter()
                .map(|(id, inst)| {
                    json!({"id": id, "spec": {"id": id}, "status": "STABLE", "statusSince": now_iso(),
                    "instances": inst, "lastUpdated": now_iso(), "lastChanged": now_iso()})
                })
                .collect();
            respond(
                &mut s,
                "200 OK",
                "application/json",
                &Value::Array(body).to_string(),
                leader_hdr,
            );
        }
        ("GET", "/v2/events") => {
            if let Some(leader) = lock(&knobs.leader).clone() {
                // Marathon >= 1.8: non-leaders redirect the event stream (sendRedirect = 302).
                let loc = format!("Location: {}{}\r\n", leader.trim_end_matches('/'), target);
                respond(&mut s, "302 Found", "text/plain", "", &loc);
                return;
            }
            if !accepts.iter().any(|a| a == "text/event-stream") {
                knobs.refused.fetch_add(1, Ordering::SeqCst);
                respond(
                    &mut s,
                    "405 Method Not Allowed",
                    "text/plain",
                    "HTTP method GET is not supported by this URL",
                    "",
                );
                return;
            }
            let filter: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("event_type="))
                .map(str::to_owned)
                .collect();
            stream(s, state, knobs, stop, filter, &authorization);
        }
        (m, p) if m != "GET" || p.starts_with("/v2/apps/") || p.starts_with("/v2/pods/") => {
            let handler = lock(&knobs.writes).clone();
            match handler {
                Some(h) => {
                    let (status, v) = h(m, p, &String::from_utf8_lossy(&body));
                    let status = format!("{status} {}", reason(status));
                    respond(
                        &mut s,
                        &status,
                        "application/json",
                        &v.to_string(),
                        leader_hdr,
                    );
                }
                None => respond(&mut s, "404 Not Found", "text/plain", "not found", ""),
            }
        }
        _ => respond(&mut s, "404 Not Found", "text/plain", "not found", ""),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Error",
    }
}

fn stream(
    mut s: TcpStream,
    state: &Mutex<State>,
    knobs: &Knobs,
    stop: &AtomicBool,
    filter: Vec<String>,
    authorization: &str,
) {
    knobs.stream_connects.fetch_add(1, Ordering::SeqCst);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n";
    if knobs
        .close_next_streams
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        // Accepted, then closed before any event (a Marathon still electing its leader).
        let _ = s.write_all(head.as_bytes());
        return;
    }
    let attached = json!({"remoteAddress": s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        "eventType": "event_stream_attached", "timestamp": now_iso()});
    // event_stream_attached goes to every subscriber, whatever its filter (Marathon sends it
    // on attach, before filtering applies).
    let first = format!("event: event_stream_attached\r\ndata: {attached}\r\n\r\n");
    if s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(first.as_bytes()))
        .and_then(|_| s.flush())
        .is_err()
    {
        return;
    }
    let sub = Arc::new(Sub {
        frames: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
        closed: AtomicBool::new(false),
        filter,
    });
    lock(state).subs.push(sub.clone());
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    loop {
        if stop.load(Ordering::Relaxed) || sub.closed.load(Ordering::SeqCst) {
            break;
        }
        let check = lock(&knobs.auth).clone();
        if check.is_some_and(|c| !c(authorization)) {
            break;
        }
        if knobs.silent.load(Ordering::SeqCst) {
            // Silent: nothing is written and nothing is taken off the queue, as with a
            // stalled server or a reader whose socket buffer is full.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let hb = *lock(&knobs.heartbeat);
        let frames: Vec<Vec<u8>> = {
            let q = lock(&sub.frames);
            let (mut q, _) = sub
                .cv
                .wait_timeout_while(q, hb, |q| {
                    q.is_empty() && !sub.closed.load(Ordering::SeqCst)
                })
                .unwrap_or_else(|p| p.into_inner());
            q.drain(..).collect()
        };
        if sub.closed.load(Ordering::SeqCst) {
            break;
        }
        let ok = if frames.is_empty() {
            // Jetty's heartbeat: "\r", flush, "\n", flush.
            s.write_all(b"\r")
                .and_then(|_| s.flush())
                .and_then(|_| s.write_all(b"\n"))
                .and_then(|_| s.flush())
                .is_ok()
        } else {
            frames.iter().all(|f| s.write_all(f).is_ok()) && s.flush().is_ok()
        };
        if !ok {
            break;
        }
    }
    sub.closed.store(true, Ordering::SeqCst);
    lock(state).subs.retain(|x| !Arc::ptr_eq(x, &sub));
    let _ = s.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn raw_get(addr: SocketAddr, path: &str, accept: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
        let mut all = Vec::new();
        let mut b = [0u8; 1024];
        for _ in 0..200 {
            if all.windows(needle.len()).any(|w| w == needle) {
                break;
            }
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
        }
        all
    }

    #[test]
    fn stream_is_crlf_attached_first_with_bare_cr_heartbeats() {
        let m = MarathonServer::start().unwrap();
        m.set_heartbeat(Duration::from_millis(50));
        let mut s = raw_get(
            m.addr,
            "/v2/events?event_type=status_update_event",
            "text/event-stream",
        );
        let head = read_until(&mut s, b"\r\n\r\nevent: event_stream_attached\r\ndata: ");
        let text = String::from_utf8_lossy(&head);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: close"));
        let hb = read_until(&mut s, b"\r\n\r\n\r\n");
        assert!(hb.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(&hb));
        m.add_task("/a", "a.1", "n1", &["10.0.0.2"], "TASK_RUNNING");
        let ev = read_until(&mut s, b"TASK_RUNNING");
        assert!(String::from_utf8_lossy(&ev).contains("event: status_update_event\r\ndata: {"));
    }

    #[test]
    fn wrong_accept_is_405_and_non_leader_redirects() {
        let m = MarathonServer::start().unwrap();
        let mut s = raw_get(m.addr, "/v2/events", "text/event-stream, */*");
        assert!(
            String::from_utf8_lossy(&read_until(&mut s, b"\r\n\r\n")).starts_with("HTTP/1.1 405")
        );
        m.set_leader(Some("http://127.0.0.1:1"));
        let mut s = raw_get(m.addr, "/v2/events", "text/event-stream");
        let t = String::from_utf8_lossy(&read_until(&mut s, b"\r\n\r\n")).into_owned();
        assert!(
            t.starts_with("HTTP/1.1 302") && t.contains("Location: http://127.0.0.1:1/v2/events"),
            "{t}"
        );
    }

    #[test]
    fn a_slow_reader_is_dropped() {
        let m = MarathonServer::start().unwrap();
        m.set_max_outstanding(3);
        m.set_silent(true);
        let _s = raw_get(m.addr, "/v2/events", "text/event-stream");
        for _ in 0..100 {
            if m.subscribers() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(m.subscribers(), 1);
        for i in 0..5 {
            m.add_task("/a", &format!("a.{i}"), "n", &[], "TASK_STAGING");
        }
        assert_eq!(m.subscribers(), 0);
    }

    /// The app as the listing built it before it was written as text: a `Value` per task,
    /// the definition's fields set over the counts, the tasks and deployments last.
    fn app_value(
        id: &str,
        tasks: &[&FakeTask],
        spec: Option<&Value>,
        health: &BTreeMap<String, bool>,
        embed: bool,
    ) -> Value {
        let tasks: Vec<Value> = tasks
            .iter()
            .map(|t| {
                let ips: Vec<Value> = t
                    .ips
                    .iter()
                    .map(|i| json!({"ipAddress": i, "protocol": "IPv4"}))
                    .collect();
                let mut task = json!({"id": t.id, "appId": t.app_id, "host": t.host,
                    "slaveId": "S0", "state": t.state, "ipAddresses": ips, "ports": [], "stagedAt": now_iso()});
                if let Some(alive) = health.get(&t.id) {
                    task["healthCheckResults"] = json!([{"alive": alive, "consecutiveFailures": if *alive { 0 } else { 1 },
                        "firstSuccess": now_iso(), "lastFailure": null, "lastSuccess": now_iso(),
                        "lastFailureCause": null, "instanceId": t.id}]);
                }
                task
            })
            .collect();
        let count = |states: &[&str]| {
            tasks
                .iter()
                .filter(|t| states.contains(&t["state"].as_str().unwrap_or("")))
                .count()
        };
        let mut a = json!({"id": id, "instances": tasks.len(), "networks": [{"mode": "container", "name": "contrail-cni-plugin"}],
            "tasksRunning": count(&["TASK_RUNNING"]), "tasksStaged": count(&["TASK_STAGING", "TASK_STARTING"])});
        if let Some(Value::Object(spec)) = spec {
            for (k, v) in spec {
                a[k] = v.clone();
            }
        }
        if embed {
            a["tasks"] = Value::Array(tasks);
            a["deployments"] = json!([]);
        }
        a
    }

    #[test]
    fn an_app_written_as_text_is_the_value_it_was_built_as() {
        let task = |id: &str, state: &str, ips: &[&str]| FakeTask {
            app_id: "/web".into(),
            id: id.into(),
            host: "agent \"1\"".into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
        };
        let ts = [
            task("web.1", "TASK_RUNNING", &["10.0.0.1"]),
            task("web.2", "TASK_STAGING", &[]),
            task("web.3", "TASK_KILLING", &["10.0.0.3", "fd00::3"]),
            task("web.4", "TASK_STARTING", &["10.0.0.4"]),
        ];
        let tasks: Vec<&FakeTask> = ts.iter().collect();
        let health: BTreeMap<String, bool> =
            [("web.1".to_owned(), true), ("web.3".to_owned(), false)].into();
        // A definition field named like a count takes its place; the others follow.
        let spec = json!({"labels": {"a": "b"}, "instances": 7, "healthChecks": [{"protocol": "HTTP"}],
            "container": null});
        for spec in [None, Some(&spec)] {
            for embed in [false, true] {
                for tasks in [&tasks[..], &[]] {
                    let mut text = Vec::new();
                    write_app(&mut text, "/web", tasks, spec, &health, embed);
                    assert_eq!(
                        String::from_utf8(text).unwrap(),
                        app_value("/web", tasks, spec, &health, embed).to_string(),
                        "spec {spec:?} embed {embed} tasks {}",
                        tasks.len()
                    );
                }
            }
        }
    }
}
