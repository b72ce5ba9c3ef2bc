//! A real redis-server for the tests that need one: started on a free loopback port in a
//! temporary directory, without persistence; stopped and restarted on the same port to
//! test outages; killed when dropped, and with the test process however it ends. Also a
//! replica of one, and real Sentinels watching one (`SentinelServer`).

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use shop::config::Config;

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// Arguments after the common ones (`--replicaof ...`).
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
}

fn redis_server() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .expect("redis-server not found; run: bash tests/tools.sh")
}

/// Children are spawned by one thread that lives as long as the process: the parent-death
/// signal follows the thread that spawned the child, and test threads come and go.
fn spawn(mut command: Command) -> Child {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(tx)
    });
    use std::os::unix::process::CommandExt;
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner.lock().unwrap().send((command, tx)).unwrap();
    rx.recv().unwrap().expect("starting redis-server")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new())
    }

    /// A replica of `primary`, returned once it answers (not necessarily synced).
    pub fn start_replica_of(primary: &RedisServer) -> RedisServer {
        let port = primary.port.to_string();
        Self::start_with(
            ["--replicaof", "127.0.0.1", &port]
                .map(str::to_owned)
                .into(),
        )
    }

    /// A server started with these arguments too (`--maxmemory ...`).
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        Self::start_with(args.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(extra: Vec<String>) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-redis")
            .tempdir()
            .unwrap();
        let port = crate::ports::free_port();
        let server = RedisServer {
            port,
            dir,
            extra,
            child: Mutex::new(None),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on its port; returns once it answers.
    pub fn restart(&self) {
        let mut command = Command::new(redis_server());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn(command);
        *self.child.lock().unwrap() = Some(child);
        wait_until_it_answers(self.port);
    }

    /// Kills the server (an outage, not a shutdown) and waits until it is gone.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Points an app's configuration at this server, with the catalog cache on.
    pub fn configure(&self, config: &mut Config) {
        config.redis.url = Some(self.url().into());
        config.catalog.cache_ttl_ms = 60_000;
    }
}

/// Returns once a PING to the port is answered; at most 10 s.
fn wait_until_it_answers(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers(port) {
        assert!(
            Instant::now() < deadline,
            "redis on port {port} did not answer within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Returns once the port accepts connections (a server that requires AUTH); at most 10 s.
fn wait_until_it_listens(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A real Redis Sentinel (`redis-server --sentinel`) watching `primary` as `shop`, quorum 2,
/// quick to call it down (1 s), requiring `password` (as the Kubernetes manifests' do; the
/// Sentinels then authenticate to each other with it). Killed when dropped.
pub struct SentinelServer {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl SentinelServer {
    pub fn start(primary: &RedisServer, password: &str) -> SentinelServer {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-sentinel")
            .tempdir()
            .unwrap();
        let port = crate::ports::free_port();
        // Sentinel rewrites its file with what it learns, so it is its own.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nrequirepass {password}\n\
                 sentinel monitor shop 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds shop 1000\n\
                 sentinel failover-timeout shop 10000\n",
                dir.path().display(),
                primary.port
            ),
        )
        .unwrap();
        let mut command = Command::new(redis_server());
        command
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn(command);
        wait_until_it_listens(port);
        SentinelServer {
            port,
            _dir: dir,
            child,
        }
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
