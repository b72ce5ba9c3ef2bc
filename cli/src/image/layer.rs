//! One image layer: a gzip-compressed tar whose bytes depend only on its entries.
//!
//! Reproducible by construction: entries sorted by path, every timestamp the same
//! (SOURCE_DATE_EPOCH), owner root:root with no names, modes normalized, and a gzip
//! header without a name or a time. The same entries give the same digest on any machine.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest, Sha256};

/// What a path in the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// Entries by absolute path inside the image (`/etc/passwd`); parents are added as needed.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

/// A built layer: the compressed blob and the digests the image config and manifest need.
#[derive(Debug, Clone)]
pub struct Built {
    pub gzip: Vec<u8>,
    /// `sha256:…` of the compressed blob (the manifest's layer digest).
    pub digest: String,
    /// `sha256:…` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

impl Layer {
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.entries.insert(clean(path), Entry::Dir { mode });
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.parents(path);
        self.entries.insert(clean(path), Entry::File { mode, data });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries.insert(
            clean(path),
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
    }

    /// Every directory above `path`, as 0755 unless already present.
    fn parents(&mut self, path: &str) {
        let path = clean(path);
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at = if at.is_empty() {
                (*part).to_owned()
            } else {
                format!("{at}/{part}")
            };
            self.entries
                .entry(at.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// The tar, then its gzip, with every time set to `epoch`.
    #[cfg(test)]
    pub fn build(&self, epoch: u64) -> std::io::Result<Built> {
        compress(self.tar(epoch)?)
    }

    /// The uncompressed tar, with every time set to `epoch`.
    pub fn tar(&self, epoch: u64) -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(epoch);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        tar.into_inner()
    }
}

/// A tar's gzip: no file name and time 0 in the header, a fixed level.
pub fn compress(tar: Vec<u8>) -> std::io::Result<Built> {
    let diff_id = sha256(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar)?;
    let gzip = gz.finish()?;
    Ok(Built {
        digest: sha256(&gzip),
        gzip,
        diff_id,
    })
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Paths inside the image are stored relative (`etc/passwd`), as image tools expect.
fn clean(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Layer {
        let mut layer = Layer::default();
        layer.file("/usr/local/bin/app", 0o755, b"binary".to_vec());
        layer.file(
            "/etc/passwd",
            0o644,
            b"root:x:0:0::/:/sbin/nologin\n".to_vec(),
        );
        layer.symlink("/lib64/ld.so", "/lib/ld.so");
        layer.dir("/tmp", 0o1777);
        layer
    }

    #[test]
    fn the_same_entries_in_any_order_give_the_same_digest() {
        let a = sample().build(1_700_000_000).unwrap();
        let mut b = Layer::default();
        b.dir("/tmp", 0o1777);
        b.symlink("/lib64/ld.so", "/lib/ld.so");
        b.file(
            "/etc/passwd",
            0o644,
            b"root:x:0:0::/:/sbin/nologin\n".to_vec(),
        );
        b.file("/usr/local/bin/app", 0o755, b"binary".to_vec());
        let b = b.build(1_700_000_000).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_ne!(a.digest, a.diff_id, "compressed and uncompressed differ");
    }

    #[test]
    fn the_time_and_the_contents_change_the_digest() {
        let a = sample().build(1).unwrap();
        assert_ne!(a.digest, sample().build(2).unwrap().digest);
        let mut changed = sample();
        changed.file("/usr/local/bin/app", 0o755, b"binary2".to_vec());
        assert_ne!(a.digest, changed.build(1).unwrap().digest);
    }

    #[test]
    fn entries_are_sorted_with_parents_root_owned_and_timed() {
        let built = sample().build(42).unwrap();
        let tar = flate2::read::GzDecoder::new(built.gzip.as_slice());
        let mut archive = tar::Archive::new(tar);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), 42);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            seen.push(entry.path().unwrap().display().to_string());
        }
        assert_eq!(
            seen,
            [
                "etc/",
                "etc/passwd",
                "lib64/",
                "lib64/ld.so",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/app"
            ]
        );
    }
}
