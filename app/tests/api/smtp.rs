//! A real SMTP server for the job tests: tests/smtp_sink.py (aiosmtpd, from the venv that
//! tests/tools.sh makes) on a loopback port, storing every accepted message as a file.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn venv_python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let python = cache.join("shopctl/venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found; run: bash tests/tools.sh",
        python.display()
    );
    python
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        Self::start_with_delay(0.0)
    }

    /// With `delay` seconds of silence before each greeting, so a client can be stopped
    /// while it waits.
    pub fn start_with_delay(delay: f64) -> SmtpSink {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::Builder::new()
            .prefix("shop-test-smtp")
            .tempdir()
            .unwrap();
        let port = crate::ports::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp_sink.py");
        let mut command = Command::new(venv_python());
        command
            .arg(script)
            .args([
                "--port",
                &port.to_string(),
                "--greeting-delay",
                &delay.to_string(),
            ])
            .arg("--dir")
            .arg(dir.path().join("mail"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("starting tests/smtp_sink.py");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // That probe was a connection too; count from here.
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_file(dir.path().join("mail/connections.log"));
        SmtpSink { port, dir, child }
    }

    /// Every message accepted so far, oldest first (quoted-printable soft line breaks undone).
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str()?.rsplit('-').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        });
        files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .replace("=\r\n", "")
                    .replace("=\n", "")
            })
            .collect()
    }

    /// Connections opened so far (each waits out the greeting delay).
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("mail/connections.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Waits (at most `limit`) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} emails arrived within {limit:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
