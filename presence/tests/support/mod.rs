//! A real `redis-server` for tests: `REDIS_URL` when set, else a private one started on a free
//! loopback port (killed on drop), so tests never touch a Redis someone else uses.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRedis {
    pub url: String,
    child: Option<Child>,
}

impl TestRedis {
    pub fn start() -> TestRedis {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return TestRedis { url, child: None };
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}). Install it (Debian/Ubuntu: apt-get install redis-server; \
                     macOS: brew install redis) or set REDIS_URL to a Redis these tests may use"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        TestRedis { url: format!("redis://127.0.0.1:{port}/"), child: Some(child) }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
