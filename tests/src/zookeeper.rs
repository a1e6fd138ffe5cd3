//! A real ZooKeeper server for tests and the devstack: Debian's `zookeeper` package
//! (`/usr/share/java/zookeeper.jar`), started standalone on 127.0.0.1 with a data dir of its
//! own, stopped (by PID) on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts the server classes.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

pub struct ZkServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// True when the package is installed (`make deps` installs it).
pub fn available() -> bool {
    Path::new(ZOOKEEPER_JAR).is_file() && Path::new("/usr/bin/java").exists()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The "four letter word" health check (`ruok` → `imok`).
pub fn ruok(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"ruok").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out == "imok"
}

impl ZkServer {
    /// Starts a standalone server; `tick_ms` sets the session timeout bounds
    /// (2x .. 20x tick by default; widened here to 1 s .. 60 s).
    pub fn start() -> anyhow::Result<Self> {
        anyhow::ensure!(
            available(),
            "ZooKeeper is not installed ({ZOOKEEPER_JAR}): run `make deps` (apt-get install zookeeper)"
        );
        let dir = tempfile::Builder::new().prefix("zk-test").tempdir()?;
        let port = free_port()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 minSessionTimeout=1000\nmaxSessionTimeout=60000\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,stat\n",
                data.display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("zookeeper.log"))?;
        let child = Command::new("/usr/bin/java")
            // No perf-data file: the JVM would leave /tmp/hsperfdata_<user> behind.
            .args([
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:-UsePerfData",
                "-cp",
                ZOOKEEPER_JAR,
            ])
            .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut me = ZkServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ruok(port) {
            if let Some(st) = me.child.try_wait()? {
                anyhow::bail!("zookeeper exited at start: {st}");
            }
            anyhow::ensure!(Instant::now() < deadline, "zookeeper did not start in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(me)
    }

    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: sessions cannot be renewed meanwhile.
    pub fn freeze(&self, frozen: bool) {
        let sig = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.freeze(false);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
