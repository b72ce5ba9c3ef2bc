//! `.shopctl/<env>/pushed-image.json`: what `shopctl image push <env>` (or the image-push
//! step of `shopctl up <env>`) pushed last, as [`PushedImage`]: the image `deploy` runs
//! when it is given none.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::deploy::PushedImage;
use crate::project::Project;

/// Where an environment's record lives.
pub fn path(project: &Project, env: &str) -> PathBuf {
    project.state_dir(env).join(PushedImage::FILE)
}

/// Records `pushed` (written through a temporary file and renamed: never half a file).
pub fn write(path: &Path, pushed: &PushedImage) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut bytes = serde_json::to_vec_pretty(pushed)?;
    bytes.push(b'\n');
    super::layout::write_atomically(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The record, or None when nothing was pushed for this environment yet.
pub fn read(path: &Path) -> Result<Option<PushedImage>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let pushed = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a pushed-image record; push again (`shopctl image push <env>`) to rewrite it",
            path.display()
        )
    })?;
    Ok(Some(pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("staging").join(PushedImage::FILE);
        assert_eq!(read(&file).unwrap(), None);
        let pushed = PushedImage {
            repository: "127.0.0.1:5000/shop/app".into(),
            digest: "sha256:0123".into(),
            revision: "0123456789abcdef-dirty".into(),
            tags: vec!["0123456789ab-dirty".into()],
        };
        write(&file, &pushed).unwrap();
        assert_eq!(read(&file).unwrap(), Some(pushed.clone()));
        assert_eq!(pushed.reference(), "127.0.0.1:5000/shop/app@sha256:0123");
        std::fs::write(&file, "{").unwrap();
        assert!(read(&file).is_err());
    }
}
