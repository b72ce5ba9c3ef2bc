//! The last step of `shopctl up <env>`: the public endpoint answers. The host is the
//! environment's `domain`, the Ingress's only rule (templates/k8s/ingress.yaml.hbs), over
//! HTTPS (the Ingress redirects HTTP there). A fresh load balancer and its DNS name take
//! minutes to appear, so each path is retried until a deadline.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// What is checked, in order: readiness (the app reaches its database) and liveness.
pub const PATHS: [&str; 2] = ["/readyz", "/healthz"];

/// How long a fresh Ingress may take to answer.
pub const DEADLINE: Duration = Duration::from_secs(300);

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const PAUSE: Duration = Duration::from_secs(5);

/// `https://<domain>`.
pub fn base_url(domain: &str) -> String {
    format!("https://{}", domain.trim_end_matches('.'))
}

/// GETs every path of [`PATHS`] until each answers 200 (or the deadline passes); one line
/// on what answered.
pub async fn check(domain: &str, namespace: &str, deadline: Duration) -> Result<String> {
    // rustls, with the platform's trust store (cli/Cargo.toml).
    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;
    let base = base_url(domain);
    let started = Instant::now();
    let spinner = crate::image::command::spinner(&format!("GET {base}{}", PATHS[0]));
    let mut answered = Vec::new();
    for path in PATHS {
        let url = format!("{base}{path}");
        loop {
            let outcome = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => format!("answered {}", response.status()),
                Err(e) => crate::errors::chain(&e),
            };
            if started.elapsed() >= deadline {
                spinner.finish_and_clear();
                bail!(
                    "GET {url} did not answer 200 within {} s (last: {outcome})\n  it needs: DNS for {domain} \
                     pointing at the Ingress's load balancer (`kubectl -n {namespace} get ingress shop-app` \
                     shows its address), a TLS certificate for {domain} (ACM for the ALB controller, the \
                     Secret shop-tls for nginx) and ready app pods (`kubectl -n {namespace} get pods`)",
                    deadline.as_secs()
                );
            }
            spinner.set_message(format!("GET {url}: {outcome}; retrying"));
            tokio::time::sleep(PAUSE).await;
        }
        answered.push(path);
    }
    spinner.finish_and_clear();
    Ok(format!(
        "{base}: {} answered 200 in {:.1} s",
        answered.join(" and "),
        started.elapsed().as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check speaks TLS: against an HTTPS server on loopback whose certificate no one
    /// trusts (a throwaway self-signed one), it fails on the certificate, not on the scheme.
    #[tokio::test]
    async fn the_check_speaks_tls_and_verifies_the_certificate() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let generated = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(generated.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = format!(
            "import http.server, ssl\n\
             s = http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)\n\
             c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('cert.pem', 'key.pem')\n\
             s.socket = c.wrap_socket(s.socket, server_side=True)\n\
             s.serve_forever()\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &server])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the HTTPS server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let err = check(&format!("127.0.0.1:{port}"), "shop", Duration::ZERO)
            .await
            .unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        let text = format!("{err:#}").to_lowercase();
        assert!(
            text.contains(&format!(
                "get https://127.0.0.1:{port}/readyz did not answer 200"
            )),
            "{text}"
        );
        // What the last attempt met (the hint after it names certificates too).
        let last = text
            .split("(last: ")
            .nth(1)
            .and_then(|t| t.lines().next())
            .unwrap_or_default();
        assert!(
            last.contains("certificate"),
            "not a TLS verification failure: {last}"
        );
    }

    #[test]
    fn the_endpoint_is_the_domain_over_https() {
        assert_eq!(
            base_url("staging.shop.example.com"),
            "https://staging.shop.example.com"
        );
        assert_eq!(base_url("shop.example.com."), "https://shop.example.com");
    }
}
