//! The local environment's AWS: `moto_server`, an AWS API emulator, run as a
//! background process on the loopback address of `aws.endpoint_url`. Its
//! pid and log live in the environment's state directory.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::Environment;

pub enum Started {
    /// Something already answers at the endpoint; it is used as it is.
    Reused,
    /// shopctl started a fresh emulator (with no resources in it).
    Fresh,
}

fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("emulator.pid")
}

pub fn log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("moto_server.log")
}

/// The loopback address of the environment's endpoint.
fn loopback_address(env: &Environment) -> Result<SocketAddr> {
    let url = env.aws.endpoint_url.as_ref().context(
        "this environment has no aws.endpoint_url, so there is no emulator to run; `up` runs local environments",
    )?;
    let address: SocketAddr = url
        .host_port()
        .replace("localhost", "127.0.0.1")
        .parse()
        .with_context(|| format!("aws.endpoint_url {url} must be http://<loopback ip>:<port> to run an emulator there"))?;
    if !address.ip().is_loopback() {
        bail!("aws.endpoint_url {url} is not on this machine; shopctl starts an emulator only on a loopback address");
    }
    Ok(address)
}

fn answers(address: &SocketAddr) -> bool {
    TcpStream::connect_timeout(address, Duration::from_millis(500)).is_ok()
}

/// Starts the emulator unless something already answers at the endpoint.
pub fn ensure_running(env: &Environment, state_dir: &Path) -> Result<Started> {
    let address = loopback_address(env)?;
    if answers(&address) {
        return Ok(Started::Reused);
    }
    let binary = crate::doctor::find("moto_server")
        .context("moto_server is not installed\n  hint: run `bash tests/tools.sh`")?;
    let log = log_file(state_dir);
    std::fs::create_dir_all(log.parent().expect("has a parent"))?;
    let log_out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(&binary)
        .args([
            "-H",
            &address.ip().to_string(),
            "-p",
            &address.port().to_string(),
        ])
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdin(Stdio::null())
        .stdout(log_out.try_clone()?)
        .stderr(log_out)
        // Its own process group: a Ctrl-C in the terminal does not stop it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    std::fs::write(pid_file(state_dir), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(&address) {
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(pid_file(state_dir));
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!("moto_server exited ({status}) before it listened on {address}; its log ends:\n  {}", tail.join("\n  "));
        }
        if Instant::now() > deadline {
            stop(state_dir)?;
            bail!(
                "moto_server did not listen on {address} within 60 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Started::Fresh)
}

/// Stops the emulator shopctl started, if it still runs. Returns whether it did.
pub fn stop(state_dir: &Path) -> Result<bool> {
    let pid_path = pid_file(state_dir);
    let Ok(text) = std::fs::read_to_string(&pid_path) else {
        return Ok(false);
    };
    let _ = std::fs::remove_file(&pid_path);
    let Ok(pid) = text.trim().parse::<libc::pid_t>() else {
        return Ok(false);
    };
    // A stale pid file may name an unrelated process by now: check it first.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("moto_server") {
        return Ok(false);
    }
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Ok(true)
}
