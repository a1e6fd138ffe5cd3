//! A list of servers of one service (Contrail config API servers, Marathon instances) tried in
//! turn: a request goes to the current one, and a failure moves on to the next.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Servers {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Servers {
    pub fn new(urls: Vec<String>) -> Servers {
        Servers {
            urls,
            current: AtomicUsize::new(0),
        }
    }

    /// The server in use, without a trailing `/`.
    pub fn base(&self) -> String {
        self.base_at(self.current.load(Ordering::SeqCst)).to_owned()
    }

    fn base_at(&self, i: usize) -> &str {
        self.urls
            .get(i % self.urls.len().max(1))
            .map(|u| u.trim_end_matches('/'))
            .unwrap_or_default()
    }

    /// After a failure of the server `url` went to: moves past it, unless a concurrent failure
    /// already did. Two callers failing on the same server must move one step, not two
    /// (skipping a healthy server).
    pub fn failed(&self, url: &str) {
        let i = self.current.load(Ordering::SeqCst);
        let same = url
            .strip_prefix(self.base_at(i))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'));
        if same {
            let _ = self.current.compare_exchange(
                i,
                i.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_moves_on_once_and_wraps() {
        let s = Servers::new(vec!["http://a:1/".into(), "http://b:2".into()]);
        assert_eq!(s.base(), "http://a:1");
        // Two callers saw the same server fail: one step.
        s.failed("http://a:1/v2/apps");
        s.failed("http://a:1/ping");
        assert_eq!(s.base(), "http://b:2");
        // A failure of a server not in use moves nothing; a prefix is not the same server.
        s.failed("http://a:1/x");
        s.failed("http://b:23/x");
        assert_eq!(s.base(), "http://b:2");
        s.failed("http://b:2?q");
        assert_eq!(s.base(), "http://a:1");
    }
}
