//! marathon-lb, reduced to what the network sees: a real HAProxy (Debian's `haproxy`) on a host
//! of the IP fabric (a "public agent"), load-balancing TCP to the task addresses of the apps in
//! its `HAPROXY_GROUP`, the way marathon-lb writes its config from Marathon's task list for
//! IP-per-task apps (marathon-lb's README: "Using HAProxy with IP-per-task"). The process runs
//! in the fabric host's namespace and is ended, by PID, on drop.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// HAProxy's config: one TCP frontend on `bind`, round-robin over `backends`.
pub fn config(bind: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut c = String::from(
        "global\n\tmaxconn 256\n\ndefaults\n\tmode tcp\n\ttimeout connect 2s\n\ttimeout client 5s\n\ttimeout server 5s\n\n",
    );
    let _ = writeln!(
        c,
        "frontend marathon_lb\n\tbind {bind}\n\tdefault_backend tasks\n"
    );
    c.push_str("backend tasks\n\tbalance roundrobin\n");
    for (i, b) in backends.iter().enumerate() {
        let _ = writeln!(c, "\tserver task{i} {b}");
    }
    c
}

pub struct Haproxy {
    child: Child,
}

impl Haproxy {
    /// Starts `haproxy` in `netns` (a name under /run/netns) with the config written to
    /// `work`; returns once it accepts connections on `bind` (bounded), or an error.
    pub fn start(
        netns: &str,
        bind: SocketAddr,
        backends: &[SocketAddr],
        work: &Path,
    ) -> Result<Haproxy, String> {
        let cfg = work.join("haproxy.cfg");
        std::fs::write(&cfg, config(bind, backends)).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "haproxy", "-db", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy: {e} (Debian package `haproxy`)"))?;
        let mut h = Haproxy { child };
        let path = Path::new("/run/netns").join(netns);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = h.child.try_wait() {
                return Err(format!("haproxy exited: {st}"));
            }
            if crate::probe::in_netns(&path, || {
                std::net::TcpStream::connect_timeout(&bind, Duration::from_millis(200)).is_ok()
            })
            .unwrap_or(false)
            {
                return Ok(h);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = h.child.kill();
        Err("haproxy did not listen within 10 s".into())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_balances_tcp_over_every_task() {
        let c = config(
            "192.168.200.2:8000".parse().unwrap(),
            &[
                "10.32.255.250:8080".parse().unwrap(),
                "10.32.255.249:8080".parse().unwrap(),
            ],
        );
        assert!(c.contains("mode tcp"));
        assert!(c.contains("bind 192.168.200.2:8000"));
        assert!(c.contains("balance roundrobin"));
        assert!(c.contains("server task0 10.32.255.250:8080"));
        assert!(c.contains("server task1 10.32.255.249:8080"));
    }
}
