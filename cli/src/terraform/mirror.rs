//! Terraform's CLI configuration for shopctl: providers come from a local
//! filesystem mirror when this machine has one, so plans work offline.

use std::path::{Path, PathBuf};

/// A directory laid out as a Terraform provider mirror
/// (`<hostname>/<namespace>/<type>/...`) and the providers it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub path: PathBuf,
    /// `registry.terraform.io/hashicorp/aws` and the like.
    pub providers: Vec<String>,
}

/// Looks for a provider mirror: `SHOPCTL_TF_PROVIDER_MIRROR` if set, then
/// Terraform's own implicit plugin directories, then directories under /opt
/// that hold a registry tree (where images put preinstalled providers).
pub fn discover() -> Option<Mirror> {
    if let Some(dir) = std::env::var_os("SHOPCTL_TF_PROVIDER_MIRROR") {
        return inspect(Path::new(&dir));
    }
    candidates().into_iter().find_map(|dir| inspect(&dir))
}

fn candidates() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
    let data_dirs =
        std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".to_owned());
    let mut dirs = Vec::new();
    dirs.extend(home.map(|h| h.join(".terraform.d/plugins")));
    dirs.extend(data_home.map(|d| d.join("terraform/plugins")));
    dirs.extend(
        data_dirs
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join("terraform/plugins")),
    );
    let mut opt: Vec<PathBuf> = std::fs::read_dir("/opt")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    opt.sort();
    dirs.extend(opt);
    dirs
}

/// The providers in `dir` if it is a mirror with at least one.
pub fn inspect(dir: &Path) -> Option<Mirror> {
    let mut providers = Vec::new();
    // Hosts are DNS names; providers hold versions (unpacked layout) or
    // release archives (packed layout). Anything else is not a mirror.
    let is_host = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains('.'))
    };
    for host in read_dirs(dir).into_iter().filter(|h| is_host(h)) {
        for namespace in read_dirs(&host) {
            for provider in read_dirs(&namespace)
                .into_iter()
                .filter(|p| holds_releases(p))
            {
                let name = |p: &Path| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                };
                providers.push(format!(
                    "{}/{}/{}",
                    name(&host),
                    name(&namespace),
                    name(&provider)
                ));
            }
        }
    }
    providers.sort();
    (!providers.is_empty()).then(|| Mirror {
        path: dir.to_path_buf(),
        providers,
    })
}

fn holds_releases(provider: &Path) -> bool {
    std::fs::read_dir(provider)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(|c: char| c.is_ascii_digit())
                || name.starts_with("terraform-provider-")
        })
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The CLI configuration file's text. With a mirror, mirrored providers come
/// only from it and nothing else is looked up for them; others install as usual.
/// Without one, downloads go to a shared plugin cache (a local mirror needs
/// none, and concurrent runs would race on it).
pub fn cli_config(mirror: Option<&Mirror>, plugin_cache: &Path) -> String {
    let mut text = String::from("# Written by shopctl; changes are overwritten.\n");
    if mirror.is_none() {
        text.push_str(&format!(
            "plugin_cache_dir = {}\n",
            hcl_string(&plugin_cache.to_string_lossy())
        ));
    }
    if let Some(mirror) = mirror {
        let list = mirror
            .providers
            .iter()
            .map(|p| hcl_string(p))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "\nprovider_installation {{\n  filesystem_mirror {{\n    path    = {}\n    include = [{list}]\n  }}\n  direct {{\n    exclude = [{list}]\n  }}\n}}\n",
            hcl_string(&mirror.path.to_string_lossy()),
        ));
    }
    text
}

fn hcl_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_providers_in_a_mirror_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(
            dir.path()
                .join("registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64"),
        )
        .unwrap();
        let mirror = inspect(dir.path()).unwrap();
        assert_eq!(mirror.providers, ["registry.terraform.io/hashicorp/aws"]);
        let config = cli_config(Some(&mirror), Path::new("/cache"));
        assert!(config.contains("filesystem_mirror"), "{config}");
        assert!(
            config.contains("exclude = [\"registry.terraform.io/hashicorp/aws\"]"),
            "{config}"
        );
        assert!(inspect(
            &dir.path()
                .join("registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64")
        )
        .is_none());
        // Three levels of directories alone are not a mirror.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("guides/rust/databases")).unwrap();
        assert!(inspect(other.path()).is_none());
    }
}
