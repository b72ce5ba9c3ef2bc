//! The programs the topology runs, found once, with one error listing all that is missing.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("missing for the local topology: {}\n  hint: run `bash tests/tools.sh` (it installs etcd-server, patroni, haproxy, nginx-light, postgresql, redis-server, rabbitmq-server, the Python tools and tansu)", .0.join(", "))]
    Missing(Vec<String>),
    #[error("the app binary was not found: not next to shopctl ({}), and no `app` on PATH\n  hint: build it with `cargo build --release -p app --bin app` (same target directory as shopctl), or pass --app-bin PATH", .0.display())]
    NoApp(PathBuf),
    #[error("--app-bin {}: no such file", .0.display())]
    AppBinMissing(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Tools {
    pub etcd: PathBuf,
    pub patroni: PathBuf,
    pub haproxy: PathBuf,
    pub nginx: PathBuf,
    pub redis: PathBuf,
    /// Debian's real script (the /usr/sbin wrapper switches accounts and resets the environment).
    pub rabbitmq: PathBuf,
    pub epmd: Option<PathBuf>,
    pub tansu: PathBuf,
    /// The venv's Python, which has aiosmtpd.
    pub python: PathBuf,
    pub psql: PathBuf,
    /// PostgreSQL's server programs (postgres, initdb, pg_ctl, pg_rewind).
    pub pg_bin: PathBuf,
}

/// The PostgreSQL version the topology is designed and tested with.
pub const PG_MAJOR: u32 = 15;

/// The directory of PostgreSQL's server programs: where a `postgres` on PATH really lives, else
/// Debian's per-version directory for [`PG_MAJOR`], else the newest version installed there.
pub fn postgres_bin_dir() -> Option<PathBuf> {
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
        return Some(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let preferred = root.join(PG_MAJOR.to_string()).join("bin");
    if preferred.join("postgres").is_file() {
        return Some(preferred);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
        .join("shopctl")
}

/// `name` in one of `dirs`, else on PATH, else in /usr/sbin.
fn find(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    pub fn locate() -> Result<Tools, ToolsError> {
        let cache = cache_dir();
        let mut missing = Vec::new();
        let pg_bin = postgres_bin_dir();
        if pg_bin.is_none() {
            missing.push(format!("postgres (postgresql-{PG_MAJOR})"));
        }
        let pg_bin_dirs: Vec<PathBuf> = pg_bin.iter().cloned().collect();
        let mut need = |name: &str, package: &str, dirs: &[PathBuf]| {
            find(name, dirs).unwrap_or_else(|| {
                missing.push(format!("{name} ({package})"));
                PathBuf::new()
            })
        };
        let rabbit_dir = [PathBuf::from("/usr/lib/rabbitmq/bin")];
        let tools = Tools {
            etcd: need("etcd", "etcd-server", &[]),
            patroni: need("patroni", "patroni", &[]),
            haproxy: need("haproxy", "haproxy", &[]),
            nginx: need("nginx", "nginx-light", &[]),
            redis: need("redis-server", "redis-server", &[]),
            rabbitmq: need("rabbitmq-server", "rabbitmq-server", &rabbit_dir),
            epmd: find("epmd", &[]),
            tansu: need(
                "tansu",
                "tests/tools.sh builds it",
                &[cache.join("tools/bin")],
            ),
            python: need("python", "tests/tools.sh's venv", &[cache.join("venv/bin")]),
            psql: need("psql", "postgresql-client", &pg_bin_dirs),
            pg_bin: pg_bin.unwrap_or_default(),
        };
        if missing.is_empty() {
            Ok(tools)
        } else {
            Err(ToolsError::Missing(missing))
        }
    }
}

/// The `app` binary: `--app-bin`, else next to this executable (same target directory),
/// else `app` on PATH.
pub fn app_binary(explicit: Option<&Path>) -> Result<PathBuf, ToolsError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
        } else {
            Err(ToolsError::AppBinMissing(path.to_owned()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("app")))
        .unwrap_or_default();
    if beside.is_file() {
        return Ok(beside);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("app"))
        .find(|p| p.is_file())
        .ok_or(ToolsError::NoApp(beside))
}
