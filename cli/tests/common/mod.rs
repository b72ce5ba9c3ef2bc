//! Test harness: a throwaway copy of the project, the shopctl binary, and
//! real services (the moto AWS emulator) started on loopback ports.
#![allow(dead_code)] // each test binary uses part of the harness

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub mod manifests;

#[path = "../../../app/tests/api/ports.rs"]
mod ports;
#[allow(unused_imports)] // each test binary uses part of the harness
pub use ports::{free_port, free_ports};

/// The repository root (the workspace above cli/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A copy of environments/ and templates/ in a temporary directory, so each
/// test has its own state directory and can edit config freely.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["environments", "templates"] {
            copy_dir(&repo_root().join(sub), &dir.path().join(sub));
        }
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// shopctl run in this project, with no terminal on stdin.
    pub fn shopctl(&self) -> Command {
        let mut cmd = Command::cargo_bin("shopctl").unwrap();
        cmd.current_dir(self.path())
            .env_remove("SHOPCTL_AWS_ENDPOINT")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Renders every environment into `<project>/out/<env>/` and returns `out`.
    pub fn render_all(&self) -> PathBuf {
        let out = self.path().join("out");
        self.shopctl()
            .args(["render", "--all", "--out"])
            .arg(&out)
            .assert()
            .success();
        out
    }

    /// Replaces `from` by `to` in environments/<env>.toml (exactly once).
    pub fn edit(&self, env: &str, from: &str, to: &str) {
        let path = self.path().join("environments").join(format!("{env}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches(from).count(),
            1,
            "`{from}` must occur once in {env}.toml"
        );
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    pub fn write_env(&self, env: &str, text: &str) {
        std::fs::write(
            self.path().join("environments").join(format!("{env}.toml")),
            text,
        )
        .unwrap();
    }

    pub fn env_text(&self, env: &str) -> String {
        std::fs::read_to_string(self.path().join("environments").join(format!("{env}.toml")))
            .unwrap()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Where tests/tools.sh installs the Python tools.
pub fn venv_bin() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("shopctl/venv/bin")
}

/// A tool from shopctl's venv, PATH or the system's sbin; panics with the fix when missing.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv_bin())
        .chain(std::env::split_paths(&path))
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed; run `bash tests/tools.sh` first"))
}

/// PostgreSQL's server programs, found as `shopctl up local` finds them: a PATH entry
/// holding `postgres`, else Debian's directory for version 15, else the newest there.
pub fn postgres_bin_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // A `postgres` on PATH may be a lone symlink: its real directory must hold the rest.
    let server_dir = |d: PathBuf| {
        let real = std::fs::canonicalize(d.join("postgres")).ok()?;
        let dir = real.parent()?.to_path_buf();
        ["pg_ctl", "initdb", "pg_controldata", "pg_rewind"]
            .iter()
            .all(|p| dir.join(p).is_file())
            .then_some(dir)
    };
    if let Some(dir) = std::env::split_paths(&path).find_map(server_dir) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|e| {
                    let version: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("postgres").is_file().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|(v, _)| (*v == 15, *v));
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("PostgreSQL is not installed; run `bash tests/tools.sh` first"))
}

pub fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto_server (AWS API emulator) on a loopback port; stopped on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = StdCommand::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        wait_for_port(port, Duration::from_secs(60));
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An AWS SDK configuration for this emulator (eu-west-1, placeholder keys), for
    /// tests that set up what a command then reads.
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .endpoint_url(self.url())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A distribution registry (Debian's `docker-registry`) on a loopback port, optionally
/// behind an htpasswd login; stopped on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(login: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let hash = bcrypt::hash(password, 5).unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shopctl-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = StdCommand::new(tool("docker-registry"))
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, Duration::from_secs(30));
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A skopeo reference to the image `shop/app` (the environments' [ecr] repository).
    pub fn reference(&self, tag: &str) -> String {
        format!("docker://127.0.0.1:{}/shop/app:{tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET on 127.0.0.1:`port`: status and body, or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A throwaway PostgreSQL (trust on loopback, database `postgres`), run as the `postgres`
/// account when the tests run as root; killed on drop.
pub struct PgServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PgServer {
    pub fn start() -> PgServer {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bin = postgres_bin_dir();
        let account = postgres_account();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let as_account = |command: &mut StdCommand| {
            if let Some((uid, gid)) = account {
                command.uid(uid).gid(gid);
            }
        };
        let mut initdb = StdCommand::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data);
        as_account(&mut initdb);
        let out = initdb.output().expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut postgres = StdCommand::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-k",
                "",
                "-c",
                "fsync=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_account(&mut postgres);
        let child = postgres.spawn().expect("postgres");
        wait_for_port(port, Duration::from_secs(30));
        PgServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `postgres` account's uid and gid when running as root (PostgreSQL refuses root).
fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam's result is read at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// `bytes` random bytes as lowercase hex: passwords and secrets a test generates.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `app` binary, built next to shopctl (`cargo test --workspace` builds it).
pub fn app_binary() -> PathBuf {
    let app = assert_cmd::cargo::cargo_bin("shopctl")
        .parent()
        .unwrap()
        .join("app");
    assert!(
        app.is_file(),
        "the app binary must be next to shopctl: cargo build -p app --bin app"
    );
    app
}
