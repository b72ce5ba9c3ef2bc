//! The image as an OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/`),
//! the format skopeo, umoci, crane and BuildKit read: its config, manifest and index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layer::{sha256, Built};
use super::ImageError;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The annotation that names an image in a layout's index (its tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    manifests: Vec<Descriptor>,
}

/// The runtime part of the image config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User")]
    pub user: String,
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd")]
    pub cmd: Vec<String>,
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    #[serde(rename = "ExposedPorts")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// An image ready to write or push: every blob by digest, and the manifest's bytes.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    /// `sha256:…` of the manifest: the image's digest.
    pub digest: String,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Image {
    /// Assembles config and manifest over built layers (base first).
    pub fn assemble(mut config: ImageConfig, layers: Vec<Built>) -> Image {
        config.rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        };
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let mut blobs = BTreeMap::new();
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_TYPE.into(),
            config: Descriptor::of(CONFIG_TYPE, &config_bytes),
            layers: layers
                .iter()
                .map(|l| Descriptor::of(LAYER_TYPE, &l.gzip))
                .collect(),
            annotations: BTreeMap::new(),
        };
        blobs.insert(manifest.config.digest.clone(), config_bytes);
        for layer in layers {
            blobs.insert(layer.digest, layer.gzip);
        }
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        Image {
            digest: sha256(&manifest_bytes),
            manifest,
            manifest_bytes,
            blobs,
        }
    }

    /// Compressed size: config, layers and manifest, as a registry stores them.
    pub fn size(&self) -> u64 {
        self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
            + self.manifest_bytes.len() as u64
    }

    /// Writes the layout into `dir`, replacing the image there, with `tag` as its name.
    /// Blobs already present are kept as they are; blobs no image refers to are removed.
    pub fn write(&self, dir: &Path, tag: &str) -> Result<(), ImageError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::Layout { path, source }
        };
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        let mut wanted: Vec<(&String, &[u8])> =
            self.blobs.iter().map(|(d, b)| (d, b.as_slice())).collect();
        wanted.push((&self.digest, &self.manifest_bytes));
        for (digest, bytes) in &wanted {
            let path = blob_path(dir, digest);
            if !path.exists() {
                write_atomically(&path, bytes).map_err(io(&path))?;
            }
        }
        let mut descriptor = Descriptor::of(MANIFEST_TYPE, &self.manifest_bytes);
        descriptor.annotations.insert(REF_NAME.into(), tag.into());
        let index = Index {
            schema_version: 2,
            media_type: INDEX_TYPE.into(),
            manifests: vec![descriptor],
        };
        let layout = dir.join("oci-layout");
        write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&layout))?;
        let index_file = dir.join("index.json");
        let text = serde_json::to_vec_pretty(&index).expect("index serializes");
        write_atomically(&index_file, &text).map_err(io(&index_file))?;
        // Old images' blobs: nothing refers to them any more.
        let keep: Vec<String> = wanted
            .iter()
            .map(|(d, _)| d.trim_start_matches("sha256:").to_owned())
            .collect();
        for entry in std::fs::read_dir(&blobs).map_err(io(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Reads the image a layout's index names (the first, and here the only, one).
    pub fn read(dir: &Path) -> Result<(Image, String), ImageError> {
        let index_file = dir.join("index.json");
        let text = std::fs::read(&index_file).map_err(|_| ImageError::NoImage {
            dir: dir.to_owned(),
        })?;
        let index: Index = serde_json::from_slice(&text).map_err(|e| ImageError::Corrupt {
            path: index_file.clone(),
            detail: e.to_string(),
        })?;
        let top = index.manifests.first().ok_or(ImageError::NoImage {
            dir: dir.to_owned(),
        })?;
        let tag = top.annotations.get(REF_NAME).cloned().unwrap_or_default();
        let manifest_bytes = read_blob(dir, &top.digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| ImageError::Corrupt {
                path: blob_path(dir, &top.digest),
                detail: e.to_string(),
            })?;
        let mut blobs = BTreeMap::new();
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            blobs.insert(d.digest.clone(), read_blob(dir, &d.digest)?);
        }
        Ok((
            Image {
                digest: top.digest.clone(),
                manifest,
                manifest_bytes,
                blobs,
            },
            tag,
        ))
    }

    pub fn config(&self) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(&self.blobs[&self.manifest.config.digest])
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// A blob, checked against its digest (a truncated or edited file is caught here).
fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let path = blob_path(dir, digest);
    let bytes = std::fs::read(&path).map_err(|source| ImageError::Layout {
        path: path.clone(),
        source,
    })?;
    if sha256(&bytes) != digest {
        return Err(ImageError::Corrupt {
            path,
            detail: format!("its content does not match {digest}"),
        });
    }
    Ok(bytes)
}

/// Writes through a sibling file and renames it: a reader sees the old file or the new one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}
