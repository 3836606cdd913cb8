//! Real Redis servers for tests: `REDIS_URL` when set, else a private `redis-server` on a free
//! loopback port (killed on drop), so tests never touch a Redis someone else uses; and a
//! private three-master Redis Cluster on loopback ports, made with `redis-cli --cluster create`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRedis {
    pub url: String,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn missing(what: &str, e: std::io::Error) -> ! {
    panic!(
        "cannot start {what} ({e}). Install Redis 7 (Debian/Ubuntu: apt-get install redis-server, \
         which brings redis-cli; macOS: brew install redis; .ci/run installs it) or set REDIS_URL \
         to a Redis these tests may use"
    )
}

fn spawn(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| missing("redis-server", e))
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether our `child` answers PING on `port`: false when it exited (the port was taken
/// between choosing it and binding it, by another test's process) or something else answers.
fn answers(child: &mut Child, port: u16) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 7];
            let pong = c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok();
            return pong && &buf == b"+PONG\r\n" && child.try_wait().ok().flatten().is_none();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl TestRedis {
    /// `REDIS_URL`, else a private server.
    pub fn start() -> TestRedis {
        match std::env::var("REDIS_URL") {
            Ok(url) => TestRedis { url, port: 0, child: None },
            Err(_) => Self::private(),
        }
    }

    /// Always a private server (for tests that stop and restart it).
    pub fn private() -> TestRedis {
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn(port, &[]);
            if answers(&mut child, port) {
                let url = format!("redis://127.0.0.1:{port}/");
                return TestRedis { url, port, child: Some(child) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no private redis-server could be started on a free port");
    }

    /// Kills the server (a private one): everything it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a private server again on the same port, empty (as after a crash).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.port != 0, "restart needs a private server");
        self.child = Some(spawn(self.port, &[]));
        wait_listening(self.port);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-master Redis Cluster on loopback ports.
pub struct TestCluster {
    /// One `redis://` URL per master; any is a seed.
    pub urls: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        let dir = std::env::temp_dir().join(format!(
            "redis-cluster-{}-{:x}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let conf = dir.join(format!("nodes-{port}.conf"));
            children.push(spawn(
                *port,
                &["--cluster-enabled", "yes", "--cluster-config-file", conf.to_str().unwrap()],
            ));
        }
        let cluster = TestCluster {
            urls: ports.iter().map(|p| format!("redis://127.0.0.1:{p}/")).collect(),
            children,
            dir,
        };
        for port in &ports {
            wait_listening(*port);
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| missing("redis-cli", e));
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every node must agree the cluster is up before it is used.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster on {port} not ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
