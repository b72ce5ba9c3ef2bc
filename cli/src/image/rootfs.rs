//! The image's two layers, gathered from this machine: a base (the shared libraries the
//! binary loads, CA certificates, time zones, a non-root user) and the app binary alone,
//! so that a code change replaces only the second.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::layer::Layer;
use super::ImageError;

/// The non-root account the image runs as (no home, no shell).
pub const APP_UID: u32 = 10001;
/// Where the binary lives in the image.
pub const APP_PATH: &str = "/usr/local/bin/app";

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Libraries, CA certificates, time zones, the user and a writable /tmp.
pub fn base_layer(binary: &Path) -> Result<Layer, ImageError> {
    let mut layer = Layer::default();
    for library in shared_libraries(binary)? {
        add_with_links(&mut layer, &library)?;
    }
    let ca = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| CA_BUNDLE.into());
    let bundle = std::fs::read(&ca).map_err(|source| ImageError::HostFile {
        path: ca.clone(),
        hint: "install the CA certificates (apt-get install ca-certificates) or set SSL_CERT_FILE",
        source,
    })?;
    layer.file(CA_BUNDLE, 0o644, bundle);
    let zoneinfo = std::env::var_os("TZDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ZONEINFO.into());
    add_tree(&mut layer, &zoneinfo, ZONEINFO).map_err(|source| ImageError::HostFile {
        path: zoneinfo.clone(),
        hint: "install the time zone data (apt-get install tzdata) or set TZDIR",
        source,
    })?;
    layer.file(
        "/etc/passwd",
        0o644,
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             app:x:{APP_UID}:{APP_UID}:shop app:/nonexistent:/usr/sbin/nologin\n"
        )
        .into_bytes(),
    );
    layer.file(
        "/etc/group",
        0o644,
        format!("root:x:0:\napp:x:{APP_UID}:\n").into_bytes(),
    );
    layer.file("/etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec());
    layer.dir("/tmp", 0o1777);
    Ok(layer)
}

/// The app binary, alone.
pub fn app_layer(binary: &Path) -> Result<Layer, ImageError> {
    let data = std::fs::read(binary).map_err(|source| ImageError::HostFile {
        path: binary.to_owned(),
        hint: "build it first (cargo build --release -p app), or pass --app-bin PATH",
        source,
    })?;
    let mut layer = Layer::default();
    layer.file(APP_PATH, 0o755, data);
    Ok(layer)
}

/// The shared objects the dynamic loader maps for `binary`, loader included, as `ldd`
/// lists them (none for a static binary).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| ImageError::Tool {
            tool: "ldd",
            detail: source.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": nothing to add.
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

/// Paths from `ldd` lines: `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Adds the file a path resolves to, and each symlink on the way as a symlink, so the
/// loader finds it under the name the binary asks for (on merged-/usr systems
/// /lib64/ld-linux-x86-64.so.2 leads to /usr/lib/x86_64-linux-gnu/…).
fn add_with_links(layer: &mut Layer, path: &Path) -> Result<(), ImageError> {
    let real = std::fs::canonicalize(path).map_err(|source| ImageError::HostFile {
        path: path.to_owned(),
        hint: "ldd listed it, but it cannot be read",
        source,
    })?;
    let data = std::fs::read(&real).map_err(|source| ImageError::HostFile {
        path: real.clone(),
        hint: "ldd listed it, but it cannot be read",
        source,
    })?;
    layer.file(&real.to_string_lossy(), 0o755, data);
    if real != path {
        layer.symlink(&path.to_string_lossy(), &real.to_string_lossy());
    }
    Ok(())
}

/// Every file and symlink under `dir`, placed under `at` in the image.
fn add_tree(layer: &mut Layer, dir: &Path, at: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let target = format!("{at}/{}", name.to_string_lossy());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            add_tree(layer, &entry.path(), &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            layer.symlink(&target, &link.to_string_lossy());
        } else if kind.is_file() {
            layer.file(&target, 0o644, std::fs::read(entry.path())?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_and_loader_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f34)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f34)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f34)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
