//! Who may act on the cluster: leader election among several managers through ZooKeeper.
//!
//! Several `contrail-mesos-manager` processes run at once (one per master, as Contrail's
//! kube-manager and Mesos' own masters do); exactly one leads the Marathon watch and the
//! reconciler. Followers keep serving the attachment API: its writes are idempotent and VNC is
//! the source of truth, so any instance can register or remove an attachment (see
//! `docs/manager.md`). Only *deciding* that something ended (events, reconcile passes) is the
//! leader's.
//!
//! The election is ZooKeeper's leader recipe (<https://zookeeper.apache.org/doc/current/recipes.html#sc_leaderElection>):
//! every candidate creates an ephemeral sequential node under `<root>/election`; the lowest
//! sequence leads; the others wait on their predecessor. [`zookeeper_client`]'s `lock` is that
//! recipe (Curator-compatible node names), so it is used as is.
//!
//! **Fencing.** A leader whose process is frozen (SIGSTOP, a long GC-like stall, a VM pause) keeps
//! believing it leads while ZooKeeper expires its session and elects another. Every action that
//! removes something therefore calls [`Leadership::fence`] first, which holds only while the
//! leader's *lease* is fresh: the lease is renewed by a round trip to ZooKeeper every third of
//! the session timeout and lasts half the session timeout from when the renewing request was
//! sent. ZooKeeper cannot expire the session, and so cannot elect anyone else, before a full
//! session timeout after that request reached it; a resumed process finds its lease long gone
//! without needing to hear from ZooKeeper first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

/// What a manager is allowed to do right now.
pub trait Leadership: Send + Sync {
    /// True while this instance leads (cheap; for gauges and to skip work).
    fn is_leader(&self) -> bool;
    /// `Ok` only while this instance leads *and* its lease is fresh: call it right before every
    /// delete the watcher or reconciler decides on.
    fn fence(&self) -> Result<(), NotLeader>;
    /// Elections this instance has won since start.
    fn elections_won(&self) -> u64;
    /// `"leader"`, `"follower"` or `"standalone"` (no ZooKeeper configured: always leads).
    fn role(&self) -> &'static str;
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("not the leader: {0}")]
pub struct NotLeader(pub String);

/// No ZooKeeper configured: one manager for the cluster, always the leader.
#[derive(Debug, Default)]
pub struct Standalone;

impl Leadership for Standalone {
    fn is_leader(&self) -> bool {
        true
    }
    fn fence(&self) -> Result<(), NotLeader> {
        Ok(())
    }
    fn elections_won(&self) -> u64 {
        0
    }
    fn role(&self) -> &'static str {
        "standalone"
    }
}

/// `[zookeeper]` settings.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// Connect string, e.g. `master1:2181,master2:2181,master3:2181` (optionally `/chroot`).
    pub connect: String,
    /// Election node's parent, e.g. `/contrail-mesos-manager/<cluster>`.
    pub root: String,
    pub session_timeout: Duration,
    /// This instance's identity, written into its election node (for operators and logs).
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ZkSetupError {
    #[error("zookeeper connect string {0:?} does not parse: {1}")]
    BadConnect(String, String),
    #[error("zookeeper election root {0:?} is not an absolute path without a trailing '/'")]
    BadRoot(String),
    #[error("zookeeper ensemble {0} unreachable: {1}")]
    Unreachable(String, String),
}

/// A connect string's `host:port` list (as written, comma-separated) and its chroot. `tcp://`
/// is the only scheme without TLS support compiled in; the first other '/' starts the chroot.
pub fn split_connect(connect: &str) -> (String, Option<String>) {
    let plain = connect.replace("tcp://", "");
    match plain.find('/') {
        Some(i) => (plain[..i].to_owned(), Some(plain[i..].to_owned())),
        None => (plain, None),
    }
}

/// Checks the connect string and the root the way the client will use them, so a typo is an
/// error at start, never a manager that silently runs alone.
pub fn validate(cfg: &ZkConfig) -> Result<(), ZkSetupError> {
    let bad = |m: &str| ZkSetupError::BadConnect(cfg.connect.clone(), m.to_owned());
    let (hosts, chroot) = split_connect(&cfg.connect);
    let chroot = chroot.as_deref();
    if hosts.trim().is_empty() {
        return Err(bad("no host"));
    }
    for h in hosts.split(',') {
        let h = h.trim();
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| bad(&format!("{h:?} has no :port")))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad(&format!("{h:?} has no host")));
        }
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(&format!("{h:?}: port {port:?} is not a port number")))?;
    }
    if let Some(c) = chroot
        && (c.len() > 1 && c.ends_with('/'))
    {
        return Err(bad("chroot ends with '/'"));
    }
    if !cfg.root.starts_with('/') || cfg.root.len() < 2 || cfg.root.ends_with('/') {
        return Err(ZkSetupError::BadRoot(cfg.root.clone()));
    }
    Ok(())
}

#[derive(Debug)]
struct Shared {
    leading: AtomicBool,
    won: AtomicU64,
    /// Until when the current lease allows acting (None: no lease).
    lease_until: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

/// A running election. Dropping it stops the election thread and gives up leadership (the
/// ephemeral node goes with the session).
pub struct ZkElection {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Leadership for ZkElection {
    fn is_leader(&self) -> bool {
        self.shared.leading.load(Ordering::SeqCst) && self.lease_fresh()
    }
    fn fence(&self) -> Result<(), NotLeader> {
        if !self.shared.leading.load(Ordering::SeqCst) {
            return Err(NotLeader("another manager leads".into()));
        }
        if !self.lease_fresh() {
            return Err(NotLeader(
                "leadership lease expired (no word from ZooKeeper within half the session timeout)"
                    .into(),
            ));
        }
        Ok(())
    }
    fn elections_won(&self) -> u64 {
        self.shared.won.load(Ordering::SeqCst)
    }
    fn role(&self) -> &'static str {
        if self.is_leader() {
            "leader"
        } else {
            "follower"
        }
    }
}

impl ZkElection {
    fn lease_fresh(&self) -> bool {
        matches!(*self.shared.lease_until.lock().unwrap(), Some(t) if Instant::now() < t)
    }

    /// Connects (failing if the ensemble cannot be reached within `connect_timeout`), then
    /// runs the election on a thread of its own.
    pub fn start(cfg: ZkConfig, connect_timeout: Duration) -> Result<Self, ZkSetupError> {
        validate(&cfg)?;
        let shared = Arc::new(Shared {
            leading: AtomicBool::new(false),
            won: AtomicU64::new(0),
            lease_until: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("zk-election".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(run(cfg, s, connect_timeout, tx));
            })
            .map_err(|e| ZkSetupError::Unreachable(String::new(), e.to_string()))?;
        let first = rx
            .recv()
            .unwrap_or_else(|_| Err("election thread ended".into()));
        let mut me = ZkElection {
            shared,
            thread: Some(thread),
        };
        if let Err(e) = first {
            me.stop();
            return Err(ZkSetupError::Unreachable(String::new(), e));
        }
        Ok(me)
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.leading.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // The thread wakes at least every lease tick (a third of the session timeout).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for ZkElection {
    fn drop(&mut self) {
        self.stop();
    }
}

fn acls() -> zk::Acls<'static> {
    zk::Acls::anyone_all()
}

async fn connect(cfg: &ZkConfig, timeout: Duration) -> Result<zk::Client, String> {
    let connector = zk::Client::connector()
        .with_session_timeout(cfg.session_timeout)
        .with_connection_timeout(timeout.min(cfg.session_timeout))
        .with_fail_eagerly();
    match tokio::time::timeout(timeout, connector.connect(&cfg.connect)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("{}: {e}", cfg.connect)),
        Err(_) => Err(format!("{}: no session within {timeout:?}", cfg.connect)),
    }
}

/// The election loop: connect, contend, lead while the session lives, start over when it is
/// lost. `ready` gets the result of the first connect.
async fn run(
    cfg: ZkConfig,
    s: Arc<Shared>,
    connect_timeout: Duration,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(200);
    let first_deadline = Instant::now() + connect_timeout;
    while !s.stop.load(Ordering::SeqCst) {
        let client = match connect(&cfg, connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                // At start, keep trying until the connect timeout (a server that has just
                // started may refuse sessions for a moment); after it, the error is fatal.
                if ready.is_some() && Instant::now() + backoff >= first_deadline {
                    let _ = ready.take().map(|r| r.send(Err(e)));
                    return;
                }
                tracing::warn!(error = %e, "zookeeper: connect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.session_timeout);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        let session = client.session_id();
        tracing::info!(session = %session, id = %cfg.id, "zookeeper: session established; contending");
        match contend_and_lead(&cfg, &s, &client).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "zookeeper: election round ended"),
        }
        s.leading.store(false, Ordering::SeqCst);
        *s.lease_until.lock().unwrap() = None;
    }
}

/// Waits to lead (or for the session to end), then leads until the session is lost.
async fn contend_and_lead(cfg: &ZkConfig, s: &Shared, client: &zk::Client) -> Result<(), String> {
    let dir = format!("{}/election", cfg.root);
    let prefix = zk::LockPrefix::new_curator(&dir, "latch-").map_err(|e| e.to_string())?;
    let options = zk::LockOptions::new(acls())
        .with_ancestor_options(zk::CreateMode::Persistent.with_acls(acls()))
        .map_err(|e| e.to_string())?;
    let tick = cfg.session_timeout / 3;
    let mut states = client.state_watcher();
    // Contend, waking every tick to notice a stop request.
    let lock = {
        let fut = client.lock(prefix, cfg.id.as_bytes(), options);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => break r.map_err(|e| format!("contending: {e}"))?,
                _ = tokio::time::sleep(tick) => {
                    if s.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
            }
        }
    };
    let node = lock.lock_path().to_owned();
    let won = s.won.fetch_add(1, Ordering::SeqCst) + 1;
    renew(s, client, &node, cfg.session_timeout).await?;
    s.leading.store(true, Ordering::SeqCst);
    tracing::info!(node = %node, elections_won = won, id = %cfg.id, "zookeeper: this manager leads");
    loop {
        tokio::select! {
            state = states.changed() => {
                match state {
                    zk::SessionState::SyncConnected => {}
                    other => {
                        // Disconnected may recover with the same session, but until it does we
                        // cannot know whether another leader exists: stop acting now.
                        s.leading.store(false, Ordering::SeqCst);
                        *s.lease_until.lock().unwrap() = None;
                        tracing::warn!(state = ?other, "zookeeper: leadership suspended");
                        if other.is_terminated() {
                            return Err(format!("session {other:?}"));
                        }
                        loop {
                            let st = states.changed().await;
                            if st == zk::SessionState::SyncConnected { break; }
                            if st.is_terminated() {
                                return Err(format!("session {st:?}"));
                            }
                        }
                        // Same session back: our node is still the lowest only if it exists.
                        renew(s, client, &node, cfg.session_timeout).await?;
                        s.leading.store(true, Ordering::SeqCst);
                        tracing::info!("zookeeper: leadership resumed on the same session");
                    }
                }
            }
            _ = tokio::time::sleep(tick) => {
                if s.stop.load(Ordering::SeqCst) {
                    s.leading.store(false, Ordering::SeqCst);
                    *s.lease_until.lock().unwrap() = None;
                    // Give up at once so a standby need not wait for the session to expire.
                    let _ = tokio::time::timeout(tick, client.delete(&node, None)).await;
                    drop(lock);
                    return Ok(());
                }
                if let Err(e) = renew(s, client, &node, cfg.session_timeout).await {
                    s.leading.store(false, Ordering::SeqCst);
                    *s.lease_until.lock().unwrap() = None;
                    return Err(e);
                }
            }
        }
    }
}

/// One round trip that proves the session (and our election node) alive; extends the lease to
/// half the session timeout after the request was *sent*.
async fn renew(
    s: &Shared,
    client: &zk::Client,
    node: &str,
    timeout: Duration,
) -> Result<(), String> {
    let sent = Instant::now();
    match tokio::time::timeout(timeout / 3, client.check_stat(node)).await {
        Ok(Ok(Some(_))) => {
            *s.lease_until.lock().unwrap() = Some(sent + timeout / 2);
            Ok(())
        }
        Ok(Ok(None)) => Err(format!("election node {node} is gone")),
        Ok(Err(e)) => Err(format!("lease renewal: {e}")),
        Err(_) => Err("lease renewal timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(connect: &str, root: &str) -> ZkConfig {
        ZkConfig {
            connect: connect.into(),
            root: root.into(),
            session_timeout: Duration::from_secs(6),
            id: "m1".into(),
        }
    }

    #[test]
    fn connect_strings() {
        for ok in [
            "127.0.0.1:2181",
            "a:2181,b:2181,c:2181",
            "master.mesos:2181/dcos",
            "tcp://a:1",
        ] {
            validate(&cfg(ok, "/contrail")).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "a", "a:", "a:x", "a:0", ":2181", "a:70000", "a:1,", "a:1/x/",
        ] {
            assert!(
                matches!(validate(&cfg(bad, "/c")), Err(ZkSetupError::BadConnect(..))),
                "{bad:?} accepted"
            );
        }
        for bad in ["", "c", "/", "/c/"] {
            assert!(
                matches!(validate(&cfg("a:1", bad)), Err(ZkSetupError::BadRoot(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn standalone_always_leads() {
        let s = Standalone;
        assert!(s.is_leader());
        assert!(s.fence().is_ok());
        assert_eq!(s.role(), "standalone");
    }
}
