//! Stopping the local topology: the supervisor is asked to stop everything (reverse
//! dependency order, SIGTERM then SIGKILL), and whatever it left is killed.

use std::time::{Duration, Instant};

use serde_json::json;

use super::control::{self, alive};
use super::supervisor::postmaster_pid;
use super::topology::Topology;

/// Stops everything; returns a phrase for the summary line.
pub fn stop(topology: &Topology) -> anyhow::Result<String> {
    let socket = topology.supervisor_socket();
    let mut what = "no supervisor was running".to_owned();
    if let Some(pid) = control::running_supervisor(&socket) {
        control::request(&socket, &json!({"op": "stop"}))?;
        // Patroni stops PostgreSQL and the app drains: allow for every grace period.
        let deadline = Instant::now() + Duration::from_secs(120);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        what = format!("supervisor {pid} stopped every component");
    }
    // Whatever is still alive: a supervisor killed with SIGKILL takes its children along
    // (parent-death signal) but not theirs (postmasters, nginx workers, epmd).
    let killed = kill_leftovers(topology);
    if killed > 0 {
        what += &format!("; killed {killed} leftover processes");
    }
    Ok(what)
}

/// Kills every process left from an earlier run of this state directory: those the last
/// state.json names, those whose working directory or command line is in the state
/// directory, and the epmd on our port. Returns how many were signalled.
pub fn kill_leftovers(topology: &Topology) -> usize {
    let mut pids: Vec<u32> = Vec::new();
    if let Some(state) = control::read_state(&topology.state_file()) {
        pids.extend(
            state
                .components
                .iter()
                .filter_map(|c| c.pid)
                .chain([state.supervisor_pid])
                .filter(|pid| alive(*pid) && is_ours(*pid, topology)),
        );
    }
    pids.extend(in_state_dir(topology));
    for pg in &topology.pg {
        pids.extend(postmaster_pid(&pg.data_dir));
    }
    pids.sort_unstable();
    pids.dedup();
    let me = std::process::id();
    pids.retain(|p| *p != me);
    for pid in &pids {
        // SAFETY: plain kill(2) of a pid checked above to belong to this state directory.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    if let Ok(epmd) = which_epmd() {
        let _ = std::process::Command::new(epmd)
            .args(["-port", &topology.ports.epmd.to_string(), "-kill"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    pids.len()
}

fn which_epmd() -> Result<std::path::PathBuf, ()> {
    super::tools::Tools::locate()
        .ok()
        .and_then(|t| t.epmd)
        .ok_or(())
}

/// Processes whose working directory or command line lies in the state directory (a
/// deleted directory reads as "<path> (deleted)", still a prefix match).
fn in_state_dir(topology: &Topology) -> Vec<u32> {
    let dir = topology.state_dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let here = cwd == dir
                || cwd.starts_with(&format!("{dir}/"))
                || cwd.starts_with(&format!("{dir} "))
                || cmdline.contains(&dir);
            // Only programs of the topology: a shell sitting in logs/ is not ours to kill.
            here && is_component_program(comm.trim())
                && (comm.trim() != "shopctl" || cmdline.contains("supervise"))
        })
        .collect()
}

fn is_component_program(comm: &str) -> bool {
    const PROGRAMS: &[&str] = &[
        "nginx",
        "postgres",
        "etcd",
        "patroni",
        "haproxy",
        "redis-server",
        "beam.smp",
        "erl_child_setup",
        "inet_gethost",
        "epmd",
        "tansu",
        "app",
        "shopctl",
    ];
    PROGRAMS.contains(&comm) || comm.starts_with("python")
}

/// A pid from an old state.json may have been reused by an unrelated process: only kill
/// it when its working directory or command line points into the state directory.
fn is_ours(pid: u32, topology: &Topology) -> bool {
    let dir = topology.state_dir.display().to_string();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cwd.starts_with(&topology.state_dir) || cmdline.contains(&dir) || cmdline.contains("supervise")
}
