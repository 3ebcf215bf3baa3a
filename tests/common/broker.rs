//! A real Mosquitto broker on a free port, stopped when dropped.

use std::process::{Child, Command};
use std::time::Duration;

pub struct Broker {
    child: Child,
    pub port: u16,
    conf: std::path::PathBuf,
}

impl Broker {
    pub fn start(port: u16) -> Broker {
        Broker::start_with(port, "allow_anonymous true\n")
    }

    /// A broker on `port` with `settings` for its listener (TLS, passwords, an ACL).
    pub fn start_with(port: u16, settings: &str) -> Broker {
        let conf = std::env::temp_dir().join(format!("onemap-mosquitto-{port}.conf"));
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}persistence false\n")).unwrap();
        let bin = std::env::var("ONEMAP_TEST_MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (run scripts/test, which installs mosquitto): {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Broker { child, port, conf };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mosquitto did not listen on {port}");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.conf);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
