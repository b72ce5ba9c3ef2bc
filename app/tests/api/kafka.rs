//! A real Kafka-protocol broker for the tests: tansu, on a loopback port, keeping topics,
//! records and committed offsets in a SQLite file, so that it can be stopped and started
//! again on the same port with everything it had.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use crate::harness::{die_with_parent, on_exit};
use crate::ports::free_port;

/// Where `tests/tools.sh` installs tansu (its cache directory), else PATH.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOP_TANSU") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("shopctl/tools/bin/tansu"));
    match cache {
        Some(path) if path.is_file() => path,
        _ => "tansu".into(),
    }
}

pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl Broker {
    /// A broker of the caller's own (for tests that stop and restart it).
    pub fn start() -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-kafka")
            .tempdir()
            .unwrap();
        let broker = Broker {
            port: free_port(),
            dir,
            child: Mutex::new(None),
        };
        broker.resume();
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process (again) on its port and file, and waits until it listens.
    pub fn resume(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(child.is_none(), "the broker is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(tansu());
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads the path after sqlite:// as relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("broker.log")).unwrap());
        die_with_parent(&mut command);
        let spawned = command.spawn().unwrap_or_else(|e| {
            panic!("starting tansu (the Kafka broker; run: bash tests/tools.sh): {e}")
        });
        on_exit(spawned.id(), None);
        *child = Some(spawned);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker process (SIGKILL: whatever it had not written is gone, as in a crash).
    pub fn kill(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker every test app of this process uses (each app has its own topic and groups).
/// Started from a thread that lives as long as the process, for the parent-death signal.
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<&'static Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let broker: &'static Broker = Box::leak(Box::new(Broker::start()));
            on_exit(0, Some(broker.dir.path().to_owned()));
            tx.send(broker).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("tansu failed to start")
    })
}
