//! A login's token, cached until shortly before it expires, renewed by one caller at a time.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{AuthError, Login, TokenSource};

/// How long a token lives when the identity service does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct State {
    /// The current token and when to stop using it (its expiry less a margin).
    token: Option<(String, Instant)>,
    /// A login is under way; others wait for its result instead of starting their own.
    busy: bool,
    /// The result of the last login that failed, handed to those who waited for it (they
    /// would otherwise each try again at once).
    failed: Option<(AuthError, u64)>,
    /// Logins finished so far (waiters tell theirs from an earlier one by it).
    round: u64,
}

pub struct Cached<L: Login> {
    login: L,
    state: Mutex<State>,
    done: Condvar,
}

/// Renew this long before the expiry: a tenth of the lifetime, between 1 s and 5 min, so a
/// call never leaves with a token that expires on its way.
fn margin(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

impl<L: Login> Cached<L> {
    pub fn new(login: L) -> Cached<L> {
        Cached {
            login,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<L: Login> TokenSource for Cached<L> {
    fn token(&self) -> Result<Option<String>, AuthError> {
        let mut st = self.lock();
        loop {
            if let Some((t, until)) = &st.token
                && Instant::now() < *until
            {
                return Ok(Some(t.clone()));
            }
            if !st.busy {
                break;
            }
            // Someone is logging in: wait for its outcome and share it.
            let round = st.round;
            st = self
                .done
                .wait_while(st, |s| s.busy && s.round == round)
                .unwrap_or_else(|p| p.into_inner());
            if let Some((e, r)) = &st.failed
                && *r == round + 1
            {
                return Err(e.clone());
            }
        }
        st.busy = true;
        st.token = None;
        drop(st);
        let started = Instant::now();
        let r = self.login.login();
        let mut st = self.lock();
        st.busy = false;
        st.round += 1;
        let out = match r {
            Ok((t, lifetime)) => {
                let life = lifetime.unwrap_or(DEFAULT_LIFETIME);
                let until = started + life.saturating_sub(margin(life));
                tracing::info!(lifetime_secs = life.as_secs(), "logged in");
                st.token = Some((t.clone(), until));
                st.failed = None;
                Ok(Some(t))
            }
            Err(e) => {
                st.failed = Some((e.clone(), st.round));
                Err(e)
            }
        };
        drop(st);
        self.done.notify_all();
        out
    }

    fn refused(&self, stale: &str) -> bool {
        let mut st = self.lock();
        if st.token.as_ref().is_some_and(|(t, _)| t == stale) {
            tracing::info!("token refused by the peer; logging in again");
            st.token = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting {
        n: AtomicU32,
        life: Duration,
        fail: Option<AuthError>,
    }
    impl Login for Arc<Counting> {
        fn login(&self) -> Result<(String, Option<Duration>), AuthError> {
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            // Long enough for every other caller to arrive while it runs.
            std::thread::sleep(Duration::from_millis(100));
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok((format!("t{n}"), Some(self.life))),
            }
        }
    }

    fn counting(life: Duration, fail: Option<AuthError>) -> Arc<Counting> {
        Arc::new(Counting {
            n: AtomicU32::new(0),
            life,
            fail,
        })
    }

    #[test]
    fn many_callers_share_one_login_and_its_failure() {
        let l = counting(Duration::from_secs(600), None);
        let c = Arc::new(Cached::new(l.clone()));
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.token().unwrap())
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap().as_deref(), Some("t1"));
        }
        assert_eq!(l.n.load(Ordering::SeqCst), 1);
        // A refusal of an old token after the renewal keeps the new one.
        assert!(c.refused("t1"));
        assert_eq!(c.token().unwrap().as_deref(), Some("t2"));
        c.refused("t1");
        assert_eq!(c.token().unwrap().as_deref(), Some("t2"));
        assert_eq!(l.n.load(Ordering::SeqCst), 2);

        let bad = counting(
            Duration::from_secs(600),
            Some(AuthError::Refused("no".into())),
        );
        let c = Arc::new(Cached::new(bad.clone()));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || c.token().unwrap_err())
            })
            .collect();
        for h in hs {
            assert!(h.join().unwrap().is_permanent());
        }
        assert_eq!(bad.n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_token_is_renewed_before_it_expires() {
        // 1.5 s to live, renewed 1 s before: stale after ~0.5 s.
        let l = counting(Duration::from_millis(1500), None);
        let c = Cached::new(l.clone());
        assert_eq!(c.token().unwrap().as_deref(), Some("t1"));
        let mut tries = 0;
        while c.token().unwrap().as_deref() == Some("t1") {
            tries += 1;
            assert!(tries < 200, "never renewed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(l.n.load(Ordering::SeqCst), 2);
    }
}
