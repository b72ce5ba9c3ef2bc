//! `shopctl image`: the app as a small, reproducible, non-root OCI image (built without a
//! container engine), pushed to the environment's ECR repository or any OCI registry.
//!
//! - [`layer`]: reproducible tar.gz layers; [`rootfs`]: what goes into them;
//! - [`layout`]: config, manifest and the OCI image layout on disk;
//! - [`registry`]: the distribution API (oci-client); [`ecr`]: ECR through aws-sdk-ecr;
//! - [`pushed`]: what `image push <env>` pushed last, for `deploy` and `up <env>`.

pub mod command;
pub mod ecr;
pub mod layer;
pub mod layout;
pub mod pushed;
pub mod registry;
pub mod rootfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use layout::{Image, ImageConfig, RootFs, RunConfig};

/// The port the app listens on inside the image.
pub const APP_PORT: u16 = 8080;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {}: {source}\n  hint: {hint}", .path.display())]
    HostFile {
        path: PathBuf,
        hint: &'static str,
        source: std::io::Error,
    },
    #[error("cannot run {tool}: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("building the app failed: {detail}\n  hint: run `cargo build --release -p shopctl -p app` to see why, or pass --app-bin PATH")]
    CargoBuild { detail: String },
    #[error("cannot write the image layout at {}: {source}", .path.display())]
    Layout {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the image layout is damaged: {}: {detail}\n  hint: build it again with `shopctl image build`", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("no image in {}\n  hint: build one first: `shopctl image build`", .dir.display())]
    NoImage { dir: PathBuf },
    #[error("{reference} already names another image ({existing}); tags never move, so ours ({ours}) was not pushed\n  hint: push under a new tag (--tag), or commit your change: the commit tag follows the commit")]
    TagExists {
        reference: String,
        existing: String,
        ours: String,
    },
    #[error("the registry {registry} refused our credentials (401/403)\n  hint: for ECR, check the AWS identity can call ecr:GetAuthorizationToken and push; for --registry, set SHOPCTL_REGISTRY_USERNAME and SHOPCTL_REGISTRY_PASSWORD")]
    Unauthorized { registry: String },
    #[error("the registry {registry} cannot be reached: {detail}\n  hint: check the URL (http:// for a registry without TLS) and that it is running")]
    Unreachable { registry: String, detail: String },
    #[error("the registry {registry} answered with an error: {detail}")]
    Registry { registry: String, detail: String },
    #[error("there is no ECR repository `{name}` in {region}\n  hint: create it with `shopctl apply {env}` (the [ecr] section of environments/{env}.toml names it)")]
    NoRepository {
        name: String,
        region: String,
        env: String,
    },
    #[error("{call} failed: {detail}")]
    Aws { call: &'static str, detail: String },
    #[error("a registry login needs SHOPCTL_REGISTRY_USERNAME and SHOPCTL_REGISTRY_PASSWORD\n  hint: set both (the password only ever comes from the environment, never a flag)")]
    MissingPassword,
}

/// Where `image build` writes the image layout: `<project>/.shopctl/image`.
pub fn layout_dir(project_root: &Path) -> PathBuf {
    project_root.join(".shopctl").join("image")
}

/// What `image build` made.
#[derive(Debug, serde::Serialize)]
pub struct Built {
    pub digest: String,
    pub size_bytes: u64,
    pub tag: String,
    pub layout: PathBuf,
    /// Layers by digest and compressed size, base first.
    pub layers: Vec<(String, u64)>,
    /// Layers taken from the previous build because their content had not changed.
    pub layers_reused: usize,
}

/// Facts about the source the image is built from, for its labels and tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// `git rev-parse HEAD`, with `-dirty` when tracked files have changes.
    pub revision: String,
    /// SOURCE_DATE_EPOCH, else the commit's time: every timestamp in the image.
    pub epoch: u64,
    pub repository_url: String,
    pub version: String,
}

impl Source {
    /// Reads git and the workspace's Cargo.toml under `root`.
    pub fn discover(root: &Path) -> Source {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .stderr(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        let revision = git(&["rev-parse", "HEAD"])
            .map(|r| if dirty { format!("{r}-dirty") } else { r })
            .unwrap_or_else(|| "unknown".into());
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .or_else(|| git(&["log", "-1", "--format=%ct"])?.parse().ok())
            .unwrap_or(0);
        let manifest = |path: &str| -> toml::Table {
            std::fs::read_to_string(root.join(path))
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default()
        };
        let workspace = manifest("Cargo.toml");
        let repository_url = workspace
            .get("workspace")
            .and_then(|w| w.get("package"))
            .and_then(|p| p.get("repository"))
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned();
        let version = manifest("app/Cargo.toml")
            .get("package")
            .and_then(|p| p.get("version"))
            .and_then(|v| v.as_str())
            .unwrap_or("0.0.0")
            .to_owned();
        Source {
            revision,
            epoch,
            repository_url,
            version,
        }
    }

    /// The tag a build is pushed under: the commit's first 12 hex digits (`-dirty` kept).
    pub fn tag(&self) -> String {
        tag_of(&self.revision)
    }
}

/// A tag as the OCI distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn parse_tag(s: &str) -> Result<String, String> {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && s.len() <= 128 {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not an image tag; allowed: up to 128 letters, digits, `_`, `.` and `-`, \
             starting with a letter, a digit or `_` (e.g. v1.4.0)"
        ))
    }
}

/// `1a2b3c4d5e6f` from `1a2b3c4d5e6f7…` (and `…-dirty` kept).
pub fn tag_of(revision: &str) -> String {
    let (sha, dirty) = match revision.strip_suffix("-dirty") {
        Some(sha) => (sha, "-dirty"),
        None => (revision, ""),
    };
    format!("{}{dirty}", &sha[..sha.len().min(12)])
}

/// The image config: a non-root user, the entrypoint, the port, OCI labels.
pub fn image_config(source: &Source) -> ImageConfig {
    let created = time::OffsetDateTime::from_unix_timestamp(source.epoch as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let labels = BTreeMap::from([
        ("org.opencontainers.image.created".into(), created.clone()),
        (
            "org.opencontainers.image.revision".into(),
            source.revision.clone(),
        ),
        (
            "org.opencontainers.image.source".into(),
            source.repository_url.clone(),
        ),
        ("org.opencontainers.image.title".into(), "shop app".into()),
        (
            "org.opencontainers.image.version".into(),
            source.version.clone(),
        ),
    ]);
    ImageConfig {
        created,
        architecture: oci_architecture().into(),
        os: "linux".into(),
        config: RunConfig {
            user: format!("{}:{}", rootfs::APP_UID, rootfs::APP_UID),
            entrypoint: vec![rootfs::APP_PATH.into()],
            cmd: vec!["serve".into()],
            env: vec![
                "PATH=/usr/local/bin:/usr/bin:/bin".into(),
                format!("APP_HTTP__BIND=0.0.0.0:{APP_PORT}"),
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
                "TZ=UTC".into(),
            ],
            exposed_ports: BTreeMap::from([(format!("{APP_PORT}/tcp"), serde_json::json!({}))]),
            working_dir: "/".into(),
            labels,
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        },
    }
}

/// This machine's architecture in OCI's words (the binary is built for it).
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `cargo build --release -p shopctl -p app` in `root`; the app binary's path. The same
/// package set as every other build of this workspace: cargo then reuses one set of compiled
/// dependencies, where `-p app` alone would compile them all again with other features.
pub fn cargo_build_app(root: &Path) -> Result<PathBuf, ImageError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "shopctl",
            "-p",
            "app",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ImageError::Tool {
            tool: "cargo",
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ImageError::CargoBuild {
            detail: format!("cargo exited with {}", out.status),
        });
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "app")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or(ImageError::CargoBuild {
            detail: "cargo named no `app` executable".into(),
        })
}

/// Assembles the image from `binary` and writes it to `dir`. Layers whose content did
/// not change since the image already there are taken from it instead of compressed again.
pub fn build(binary: &Path, source: &Source, tag: &str, dir: &Path) -> Result<Built, ImageError> {
    let previous = Image::read(dir).ok().map(|(image, _)| image);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ImageError::Layout { path, source }
    };
    let mut layers = Vec::new();
    let mut layers_reused = 0;
    for layer in [rootfs::base_layer(binary)?, rootfs::app_layer(binary)?] {
        let tar = layer.tar(source.epoch).map_err(io(dir))?;
        let diff_id = layer::sha256(&tar);
        match previous.as_ref().and_then(|p| reuse(p, &diff_id)) {
            Some(built) => {
                layers_reused += 1;
                layers.push(built);
            }
            None => layers.push(layer::compress(tar).map_err(io(dir))?),
        }
    }
    let image = Image::assemble(image_config(source), layers);
    image.write(dir, tag)?;
    Ok(Built {
        digest: image.digest.clone(),
        size_bytes: image.size(),
        tag: tag.to_owned(),
        layout: dir.to_owned(),
        layers: image
            .manifest
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size))
            .collect(),
        layers_reused,
    })
}

/// The previous image's layer with this uncompressed content, if it has one.
fn reuse(previous: &Image, diff_id: &str) -> Option<layer::Built> {
    let config = previous.config().ok()?;
    let at = config.rootfs.diff_ids.iter().position(|d| d == diff_id)?;
    let descriptor = previous.manifest.layers.get(at)?;
    Some(layer::Built {
        gzip: previous.blobs.get(&descriptor.digest)?.clone(),
        digest: descriptor.digest.clone(),
        diff_id: diff_id.to_owned(),
    })
}

/// Registry credentials from SHOPCTL_REGISTRY_USERNAME / SHOPCTL_REGISTRY_PASSWORD, if set.
pub fn credentials_from_env() -> Result<Option<registry::Credentials>, ImageError> {
    let Ok(username) = std::env::var("SHOPCTL_REGISTRY_USERNAME") else {
        return Ok(None);
    };
    let password =
        std::env::var("SHOPCTL_REGISTRY_PASSWORD").map_err(|_| ImageError::MissingPassword)?;
    Ok(Some(registry::Credentials::Basic { username, password }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            epoch: 1_764_000_000,
            repository_url: "https://example.com/shop".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn tags_follow_the_distribution_spec() {
        assert!(parse_tag("v1.4.0").is_ok());
        assert!(parse_tag("_x").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commit_tags_are_twelve_digits_and_keep_dirty() {
        assert_eq!(source().tag(), "0123456789ab");
        assert_eq!(tag_of("0123456789abcdef-dirty"), "0123456789ab-dirty");
        assert_eq!(tag_of("unknown"), "unknown");
    }

    #[test]
    fn the_config_runs_the_app_as_a_non_root_user_with_labels() {
        let config = image_config(&source());
        assert_eq!(config.config.user, "10001:10001");
        assert_eq!(config.config.entrypoint, ["/usr/local/bin/app"]);
        assert_eq!(config.config.cmd, ["serve"]);
        assert!(config.config.exposed_ports.contains_key("8080/tcp"));
        assert_eq!(config.created, "2025-11-24T16:00:00Z");
        let labels = &config.config.labels;
        assert_eq!(labels["org.opencontainers.image.created"], config.created);
        assert_eq!(
            labels["org.opencontainers.image.revision"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://example.com/shop"
        );
    }
}
