//! `shopctl image build|push|ls` against real parts: Debian's `docker-registry` (the CNCF
//! distribution registry) on a loopback port, skopeo to pull back, moto_server for ECR's
//! token and listing, and the image's own root filesystem run under chroot as its user
//! against a real PostgreSQL.
//!
//! The app binary packaged here is the debug build next to shopctl (the release build
//! is what `docs/benchmarks.md` measures); SOURCE_DATE_EPOCH is fixed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{app_binary, free_port, tool, Moto, Project, Registry};
use predicates::prelude::*;
use serde_json::Value;

const EPOCH: &str = "1764000000";
/// Moto's ECR login: user AWS, password `<account>-auth-token`.
const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";

/// `shopctl image build --app-bin <debug app> --json` in a project; the outcome.
fn build(project: &Project, epoch: &str) -> Value {
    let out = project
        .shopctl()
        .args(["image", "build", "--json", "--app-bin"])
        .arg(app_binary())
        .env("SOURCE_DATE_EPOCH", epoch)
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn push(project: &Project, registry: &Registry, extra: &[&str]) -> assert_cmd::assert::Assert {
    project
        .shopctl()
        .args(["image", "push", "staging", "--json", "--registry"])
        .arg(registry.url())
        .args(extra)
        .timeout(Duration::from_secs(120))
        .assert()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool("skopeo"))
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn two_builds_of_the_same_inputs_give_the_same_small_non_root_image() {
    let (a, b) = (Project::new(), Project::new());
    let first = build(&a, EPOCH);
    let second = build(&b, EPOCH);
    assert_eq!(first["digest"], second["digest"], "reproducible");
    assert_eq!(first["layers"].as_array().unwrap().len(), 2);
    // A rebuild with nothing changed reuses both layers; another time gives another image.
    let again = build(&a, EPOCH);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["layers_reused"], 2);
    let later = build(&b, "1764000001");
    assert_ne!(later["digest"], first["digest"]);

    // The layout is a real OCI image layout: skopeo reads it.
    let layout = a.path().join(".shopctl/image");
    let config: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}", layout.display()),
    ]))
    .unwrap();
    assert_eq!(config["config"]["User"], "10001:10001");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/app");
    assert_eq!(config["created"], "2025-11-24T16:00:00Z");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.created"],
        "2025-11-24T16:00:00Z"
    );
}

#[test]
fn push_skips_what_the_registry_has_and_never_moves_a_tag() {
    let project = Project::new();
    let built = build(&project, EPOCH);
    let digest = built["digest"].as_str().unwrap();
    let registry = Registry::start(None);

    let out = push(&project, &registry, &["--tag", "v1.0.0"]).success();
    let first: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(first["digest"], digest);
    assert_eq!(first["blobs_uploaded"], 3, "{first}");
    assert_eq!(first["blobs_present"], 0);
    // ...and recorded for `deploy`: the repository as a pod spec names it, the digest, the tags.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".shopctl/staging/pushed-image.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        record,
        serde_json::json!({
            "repository": format!("127.0.0.1:{}/shop/app", registry.port),
            "digest": digest,
            "revision": "unknown",
            "tags": ["unknown", "v1.0.0"],
        })
    );

    // Pulled back, the manifest is byte for byte ours, under both tags.
    for tag in ["unknown", "v1.0.0"] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &registry.reference(tag),
        ]);
        assert_eq!(sha256_hex(&raw), digest, "{tag}");
    }

    // Again: nothing uploaded, both tags already name it.
    let out = push(&project, &registry, &["--tag", "v1.0.0"]).success();
    let second: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(second["blobs_uploaded"], 0, "{second}");
    assert_eq!(second["bytes_uploaded"], 0);
    assert_eq!(second["blobs_present"], 3);

    // Another image under the same tag: refused before any upload, the tag unmoved.
    build(&project, "1764000001");
    push(&project, &registry, &["--tag", "v1.0.0"])
        .failure()
        .stderr(predicate::str::contains("already names another image"))
        .stderr(predicate::str::contains(digest));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &registry.reference("v1.0.0"),
    ]);
    assert_eq!(sha256_hex(&raw), digest, "the tag did not move");
    // ...and nothing of it was left tagged.
    let tags: Value = serde_json::from_slice(
        &project
            .shopctl()
            .args(["image", "ls", "staging", "--json", "--registry"])
            .arg(registry.url())
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let mut tags: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["unknown", "v1.0.0"]);
}

#[test]
fn ecr_login_from_the_emulator_opens_a_registry_that_wants_it() {
    let project = Project::new();
    build(&project, EPOCH);
    let moto = Moto::start();
    let registry = Registry::start(Some(("AWS", MOTO_ECR_PASSWORD)));
    let aws = ["--aws-endpoint".to_string(), moto.url()];
    let aws: Vec<&str> = aws.iter().map(String::as_str).collect();

    // ECR's token (GetAuthorizationToken on the emulator) is the registry's login.
    let mut args = vec!["--auth", "ecr"];
    args.extend(&aws);
    let out = push(&project, &registry, &args).success();
    let pushed: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(pushed["blobs_uploaded"], 3);

    // Without it, or with a wrong one: refused, said so, non-zero.
    push(&project, &registry, &["--auth", "none"])
        .failure()
        .stderr(predicate::str::contains("refused our credentials"));
    project
        .shopctl()
        .args(["image", "push", "staging", "--registry"])
        .arg(registry.url())
        .env("SHOPCTL_REGISTRY_USERNAME", "AWS")
        .env("SHOPCTL_REGISTRY_PASSWORD", "wrong")
        .assert()
        .failure()
        .stderr(predicate::str::contains("refused our credentials"))
        .stderr(predicate::str::contains("wrong").not());

    // The environment's repository does not exist in the emulator yet.
    project
        .shopctl()
        .args(["image", "ls", "staging"])
        .args(&aws)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "there is no ECR repository `shop/app` in eu-west-1",
        ))
        .stderr(predicate::str::contains("shopctl apply staging"));
    project
        .shopctl()
        .args(["image", "push", "staging"])
        .args(&aws)
        .assert()
        .failure()
        .stderr(predicate::str::contains("there is no ECR repository"));

    // Once it exists and holds an image, `ls` lists its tags and digest.
    let manifest = std::fs::read(
        project.path().join(".shopctl/image/blobs/sha256").join(
            pushed["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sdk = moto.sdk().await;
        let ecr = aws_sdk_ecr::Client::new(&sdk);
        ecr.create_repository()
            .repository_name("shop/app")
            .send()
            .await
            .unwrap();
        ecr.put_image()
            .repository_name("shop/app")
            .image_manifest(String::from_utf8(manifest).unwrap())
            .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
            .image_tag("v1.0.0")
            .send()
            .await
            .unwrap();
    });
    let out = project
        .shopctl()
        .args(["image", "ls", "staging", "--json"])
        .args(&aws)
        .assert()
        .success();
    let listed: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(listed[0]["tags"][0], "v1.0.0", "{listed}");
    assert!(listed[0]["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let project = Project::new();
    // No image built yet.
    project
        .shopctl()
        .args([
            "image",
            "push",
            "staging",
            "--registry",
            "http://127.0.0.1:9",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no image in"))
        .stderr(predicate::str::contains("shopctl image build"));
    build(&project, EPOCH);
    project
        .shopctl()
        .args([
            "image",
            "push",
            "nowhere",
            "--registry",
            "http://127.0.0.1:9",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nowhere"));
    // Nothing listens there.
    let closed = free_port();
    project
        .shopctl()
        .args(["image", "push", "staging", "--registry"])
        .arg(format!("http://127.0.0.1:{closed}"))
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot be reached"));
    project
        .shopctl()
        .args(["image", "build", "--tag=-bad", "--app-bin"])
        .arg(app_binary())
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not an image tag"));
    project
        .shopctl()
        .args(["image", "build", "--app-bin", "/nonexistent/app"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/nonexistent/app"));
}

/// The image runs: its layers unpacked into a root filesystem, its entrypoint run there
/// (chroot) as its own user, against a real PostgreSQL; /healthz and /readyz answer.
#[test]
fn the_image_runs_as_its_user_from_its_own_root_filesystem() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "running the image's root filesystem needs root (chroot)"
    );
    let project = Project::new();
    build(&project, EPOCH);
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("copy");
    skopeo(&[
        "copy",
        &format!("oci:{}", project.path().join(".shopctl/image").display()),
        &format!("dir:{}", copy.display()),
    ]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = copy.join(
            layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
        tar::Archive::new(gz).unpack(&rootfs).unwrap();
    }
    // The image's user must be able to enter its own root.
    std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let pg = common::PgServer::start();
    let port = free_port();
    let mut app = Command::new(tool("chroot"))
        .arg("--userspec=10001:10001")
        .arg(&rootfs)
        .args(["/usr/local/bin/app", "serve"])
        .env_clear()
        .envs([
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("APP_HTTP__BIND", format!("127.0.0.1:{port}")),
            ("APP_DATABASE__URL", pg.url("postgres")),
            (
                "APP_AUTH__JWT_SECRET",
                "an image test secret of 32 bytes!".into(),
            ),
            (
                "APP_PAYMENTS__WEBHOOK_SECRET",
                "an image test webhook secret".into(),
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chroot");
    let started = Instant::now();
    let ready = loop {
        if let Some((200, body)) = common::http_get(port, "/readyz") {
            break body;
        }
        if let Ok(Some(status)) = app.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            app.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the app exited ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no /readyz 200"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.contains(r#""database":"ok""#), "{ready}");
    assert_eq!(common::http_get(port, "/healthz").map(|r| r.0), Some(200));
    // It runs as the image's user, not root (chroot execs the app in place: same pid).
    let uid_line = std::fs::read_to_string(format!("/proc/{}/status", app.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(uid_line.contains("10001"), "{uid_line}");
    let _ = app.kill();
    let _ = app.wait();
}
