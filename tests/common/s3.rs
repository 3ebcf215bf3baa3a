//! A real S3-protocol server (moto's, installed from PyPI by `scripts/test`) on a free port,
//! stopped when dropped.

use std::process::{Child, Command};
use std::time::Duration;

pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = super::broker::free_port();
        let bin = std::env::var("ONEMAP_TEST_MOTO")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/var/s3-venv/bin/moto_server").to_string());
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (run scripts/test, which installs moto[server]): {e}"));
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return S3Server { child, port };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the S3 server did not listen on {port}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto takes an unsigned `PUT /bucket`).
    pub async fn bucket(&self, bucket: &str) {
        let r = reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint())).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
