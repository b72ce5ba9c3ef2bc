//! The supervisor's files and socket as others see them: `run/state.json` (written
//! atomically by the supervisor on every change) and one-JSON-line requests on
//! `run/supervisor.sock` (`hold`, `release`, `stop`, `ping`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Starting,
    Restarting,
    Held,
    Stopped,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = serde_json::to_value(self).expect("serializes");
        f.write_str(word.as_str().unwrap_or_default())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentState {
    pub name: String,
    pub pid: Option<u32>,
    pub state: RunState,
    pub restarts: u32,
    pub started_at: Option<String>,
    /// `"signal 9 at <RFC3339>"` or `"exit code 1 at <RFC3339>"`.
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub supervisor_pid: u32,
    pub updated_at: String,
    pub components: Vec<ComponentState>,
    /// The one-time database preparation, which the supervisor retries until it works.
    #[serde(default)]
    pub prepare: PrepareState,
}

/// Failed attempts at preparing the database (role and database, `app migrate`, `app seed`):
/// `up` stops waiting when they keep failing, as it does for a crash-looping component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepareState {
    pub failures: u32,
    /// The step that failed last (`database`, `migrate` or `seed`; its log is `<step>.log`).
    pub step: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no supervisor answers on {}: {source}", .socket.display())]
    Unreachable {
        socket: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the supervisor refused `{op}`: {message}")]
    Refused { op: String, message: String },
}

/// Reads `state.json`; `None` when there is none (never started, or purged).
pub fn read_state(file: &Path) -> Option<StateFile> {
    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

/// Sends one request and returns the answer; an answer with `"ok": false` is an error.
pub fn request(socket: &Path, request: &Value) -> Result<Value, ControlError> {
    let unreachable = |source| ControlError::Unreachable {
        socket: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(unreachable)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(unreachable)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(unreachable)?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| unreachable(e.into()))?;
    if answer["ok"] == Value::Bool(true) {
        Ok(answer)
    } else {
        Err(ControlError::Refused {
            op: request["op"].as_str().unwrap_or_default().to_owned(),
            message: answer["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned(),
        })
    }
}

/// The pid of the running supervisor, when one answers on its socket.
pub fn running_supervisor(socket: &Path) -> Option<u32> {
    let answer = request(socket, &serde_json::json!({"op": "ping"})).ok()?;
    answer["pid"].as_u64().map(|p| p as u32)
}

/// Whether a process exists (signal 0).
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Seconds since an RFC 3339 UTC time written by [`now_rfc3339`].
pub fn seconds_since(rfc3339: &str) -> Option<i64> {
    let date = rfc3339.get(..10)?;
    let clock = rfc3339.get(11..19)?;
    let mut d = date.split('-').map(|x| x.parse::<i32>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|x| x.parse::<u8>().ok());
    let (h, min, s) = (c.next()??, c.next()??, c.next()??);
    let date =
        time::Date::from_calendar_date(y, time::Month::try_from(m as u8).ok()?, day as u8).ok()?;
    let at = date.with_hms(h, min, s).ok()?.assume_utc();
    Some((time::OffsetDateTime::now_utc() - at).whole_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_since_reads_what_now_writes() {
        let now = now_rfc3339();
        let elapsed = seconds_since(&now).unwrap();
        assert!((0..=1).contains(&elapsed), "{now}: {elapsed}");
        assert!(seconds_since("2026-01-01T00:00:00Z").unwrap() > 0);
        assert_eq!(seconds_since("yesterday"), None);
    }

    #[test]
    fn state_file_has_the_agreed_shape() {
        let file = StateFile {
            supervisor_pid: 1,
            updated_at: "2026-11-29T00:00:00Z".into(),
            components: vec![ComponentState {
                name: "pg-1".into(),
                pid: None,
                state: RunState::Held,
                restarts: 2,
                started_at: None,
                last_exit: Some("signal 9 at 2026-11-29T00:00:00Z".into()),
            }],
            prepare: PrepareState::default(),
        };
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::json!({"supervisor_pid": 1, "updated_at": "2026-11-29T00:00:00Z",
                "components": [{"name": "pg-1", "pid": null, "state": "held", "restarts": 2,
                    "started_at": null, "last_exit": "signal 9 at 2026-11-29T00:00:00Z"}],
                "prepare": {"failures": 0, "step": null, "last_error": null}})
        );
    }
}
