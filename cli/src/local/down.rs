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
    // Whatever is still alive (a supervisor killed with SIGKILL leaves postmasters behind).
    let mut killed = 0;
    if let Some(state) = control::read_state(&topology.state_file()) {
        let pids = state
            .components
            .iter()
            .filter_map(|c| c.pid)
            .chain([state.supervisor_pid]);
        for pid in pids {
            if alive(pid) && is_ours(pid, topology) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                killed += 1;
            }
        }
    }
    for pg in &topology.pg {
        if let Some(pid) = postmaster_pid(&pg.data_dir) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed += 1;
        }
    }
    if killed > 0 {
        what += &format!("; killed {killed} leftover processes");
    }
    Ok(what)
}

/// A pid from an old state.json may have been reused by an unrelated process: only kill
/// it when its working directory or command line points into the state directory.
fn is_ours(pid: u32, topology: &Topology) -> bool {
    let dir = topology.state_dir.display().to_string();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cwd.starts_with(&topology.state_dir) || cmdline.contains(&dir) || cmdline.contains("supervise")
}
