//! A real RabbitMQ node for one test: `rabbitmq-server` with its own node name, loopback
//! ports, data, logs and configuration in a temporary directory (HOME too, for the Erlang
//! cookie). Stopped on drop, and killed with the test process however it ends. It can be
//! stopped and started again on the same ports with its data kept (the messages of durable
//! queues survive, as in production).
//!
//! Shared with the CLI's tests (`#[path]`), so it uses only std, libc and tempfile.
#![allow(dead_code)]

// The including test crate has `free_port` (ports.rs) at its root: the app's API tests and
// the CLI's `jobs` test each allocate every port from one cursor.
use super::free_port;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct RabbitServer {
    pub port: u16,
    pub dist_port: u16,
    pub node: String,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

/// A RabbitMQ command: Debian's real scripts under /usr/lib/rabbitmq/bin (the /usr/sbin
/// wrappers switch to the rabbitmq account and reset the environment), else PATH, else
/// /usr/sbin.
fn bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if debian.is_file() {
        return debian;
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
    {
        return found;
    }
    panic!("{name} not found; run: bash tests/tools.sh (it installs rabbitmq-server)")
}

impl RabbitServer {
    /// Starts a node and waits until it accepts AMQP connections (at most 60 s).
    pub fn start() -> RabbitServer {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-rabbitmq")
            .tempdir()
            .unwrap();
        let port = free_port();
        let dist_port = free_port();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{port}\n\
                 loopback_users = none\n\
                 # Small machines: do not stop publishers for lack of disk space.\n\
                 disk_free_limit.absolute = 1MB\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let server = RabbitServer {
            port,
            dist_port,
            node: format!("shoptest-{}-{port}@localhost", std::process::id()),
            dir,
            child: Mutex::new(None),
        };
        server.spawn();
        server
    }

    fn env(&self, command: &mut Command) {
        let d = self.dir.path();
        command
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            // The distribution listener on loopback too; epmd (started by the VM when none
            // runs) on loopback.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
    }

    /// Starts the node (again) on its ports and waits for AMQP.
    pub fn spawn(&self) {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(bin("rabbitmq-server"));
        self.env(&mut command);
        // The script then execs the VM instead of waiting on it: the child is the broker,
        // SIGTERM stops it cleanly and the parent-death signal reaches it.
        command
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("stderr.log")).unwrap());
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("starting rabbitmq-server");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().unwrap())
            {
                panic!(
                    "rabbitmq-server exited ({status}) before listening: {}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rabbitmq-server did not listen within 60 s: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for entry in entries.flatten() {
                text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
            }
        }
        let start = text.len().saturating_sub(3000);
        text[start..].to_owned()
    }

    /// Stops the node cleanly (SIGTERM; SIGKILL after 30 s) and waits for it to exit.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The port is free again once the VM is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }

    /// The AMQP URL of the default virtual host (user guest, allowed from loopback here).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl -n <node> args...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(bin("rabbitmqctl"));
        self.env(&mut command);
        command.arg("-n").arg(&self.node).args(args);
        command.output().expect("running rabbitmqctl")
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // The test is over: no need for a clean stop.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
