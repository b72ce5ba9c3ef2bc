//! A real SMTP server for the job tests: tests/smtp_sink.py (aiosmtpd, from the venv that
//! tests/tools.sh makes) on a loopback port, storing every accepted message as a file;
//! plain, or requiring STARTTLS with a certificate from a throwaway CA ([`TestCa`]).

use std::{
    io::{BufRead, BufReader, Write},
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
        Self::spawn(delay, &[])
    }

    /// Offering and requiring STARTTLS with `ca`'s certificate for 127.0.0.1, and requiring
    /// `login` ("user:password") if given.
    pub fn start_tls(ca: &TestCa, login: Option<&str>) -> SmtpSink {
        let mut args = vec![
            "--tls-cert".to_owned(),
            ca.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            ca.server_key.display().to_string(),
        ];
        if let Some(login) = login {
            args.extend(["--login".to_owned(), login.to_owned()]);
        }
        Self::spawn(0.0, &args)
    }

    fn spawn(delay: f64, extra: &[String]) -> SmtpSink {
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
            .args(extra)
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

    /// How each accepted message came: `tls` or `plain`, then the login or `-`.
    pub fn sessions(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("mail/sessions.log"))
            .map(|t| {
                t.lines()
                    .filter_map(|l| l.split_once(' ').map(|(_, how)| how.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The sink's answer to `MAIL FROM` sent in plain text after `EHLO`, and whether its
    /// `EHLO` reply offered STARTTLS.
    pub fn plain_mail_from(&self) -> (String, bool) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        // One reply: lines up to the one whose 4th character is a space.
        let mut reply = || {
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line.trim_end().to_owned());
                if last || line.is_empty() {
                    return lines;
                }
            }
        };
        reply();
        writer.write_all(b"EHLO client.test\r\n").unwrap();
        let offers = reply().iter().any(|l| l.contains("STARTTLS"));
        writer
            .write_all(b"MAIL FROM:<probe@example.com>\r\n")
            .unwrap();
        let answer = reply().join("\n");
        let _ = writer.write_all(b"QUIT\r\n");
        (answer, offers)
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

/// A throwaway private CA and a server certificate it signed for 127.0.0.1, made with
/// openssl (a relay whose certificate the system does not trust).
pub struct TestCa {
    _dir: tempfile::TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-ca")
            .tempdir()
            .unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-days", "1", "-subj", "/CN=shop test CA"],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &key,
                &["-subj", "/CN=127.0.0.1", "-keyout", "server.key"],
                &["-out", "server.csr"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n\
             extendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        TestCa {
            ca_cert: dir.path().join("ca.pem"),
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            _dir: dir,
        }
    }
}
