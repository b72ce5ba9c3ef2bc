//! The rendered manifests as objects: parsed from the YAML streams under `k8s/` of a
//! rendered tree, each named by its [`Key`] and where it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The label every object of an environment carries; prune and teardown select by it.
pub const ENVIRONMENT_LABEL: &str = "shop.example.com/environment";
/// The label saying shopctl manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "shopctl";

/// What names one object in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub api_version: String,
    pub kind: String,
    /// None for cluster-scoped objects (Namespace, StorageClass).
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    /// The key of a Kubernetes object given as JSON, if it has one.
    pub fn of(object: &Value) -> Option<Key> {
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        Some(Key {
            api_version: text(&object["apiVersion"])?,
            kind: text(&object["kind"])?,
            namespace: text(&object["metadata"]["namespace"]),
            name: text(&object["metadata"]["name"])?,
        })
    }

    /// What names the object whatever the API version it is read through: group, kind,
    /// namespace, name (`autoscaling/v2` and `autoscaling/v1` name the same HPA).
    pub fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            self.group(),
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or("")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub key: Key,
    pub value: Value,
    /// `k8s/app.yaml#3`: the file and the document's position in it (from 1).
    pub source: String,
}

impl Object {
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels(&self.value)
    }
}

/// The labels of an object given as JSON.
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("{source_name}: not YAML: {reason}")]
    Yaml { source_name: String, reason: String },
    #[error("{source_name}: a document without apiVersion, kind or metadata.name")]
    Unnamed { source_name: String },
    #[error(
        "{source_name}: {key} lacks the label {ENVIRONMENT_LABEL}={env}; every object must carry it, or prune and teardown cannot find it"
    )]
    Unlabelled {
        source_name: String,
        key: String,
        env: String,
    },
    #[error("{key} is rendered twice: {first} and {second}")]
    Duplicate {
        key: String,
        first: String,
        second: String,
    },
    #[error("no Kubernetes manifests under k8s/ in the rendered tree")]
    Empty,
}

/// Parses one YAML stream; empty documents (only comments) are skipped. `#n` in the
/// names below is the n-th object of the file.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })?;
    let mut objects = Vec::new();
    for value in documents.into_iter().filter(|v| !v.is_null()) {
        let source = format!("{source_name}#{}", objects.len() + 1);
        let key = Key::of(&value).ok_or(ManifestError::Unnamed {
            source_name: source.clone(),
        })?;
        objects.push(Object { key, value, source });
    }
    Ok(objects)
}

/// Every object under `k8s/` of a rendered tree, in file order, each checked to carry
/// the environment's label, none twice.
pub fn from_tree(
    tree: &BTreeMap<PathBuf, String>,
    env: &str,
) -> Result<Vec<Object>, ManifestError> {
    let k8s = Path::new("k8s");
    let mut objects: Vec<Object> = Vec::new();
    for (path, text) in tree.iter().filter(|(p, _)| p.starts_with(k8s)) {
        objects.extend(parse(&path.display().to_string(), text)?);
    }
    if objects.is_empty() {
        return Err(ManifestError::Empty);
    }
    let mut seen: BTreeMap<&Key, &str> = BTreeMap::new();
    for object in &objects {
        if object.labels().get(ENVIRONMENT_LABEL).map(String::as_str) != Some(env) {
            return Err(ManifestError::Unlabelled {
                source_name: object.source.clone(),
                key: object.key.to_string(),
                env: env.to_owned(),
            });
        }
        if let Some(first) = seen.insert(&object.key, &object.source) {
            return Err(ManifestError::Duplicate {
                key: object.key.to_string(),
                first: first.to_owned(),
                second: object.source.clone(),
            });
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams_skipping_comment_only_documents() {
        let text = "# header\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: shop\n---\n# nothing\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n";
        let objects = parse("k8s/x.yaml", text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].key.to_string(), "ConfigMap shop/a");
        assert_eq!(objects[1].key.to_string(), "Deployment b");
        assert_eq!(objects[1].key.group(), "apps");
        assert_eq!(objects[0].key.group(), "");
        assert!(objects[1].source.starts_with("k8s/x.yaml#"));
    }

    #[test]
    fn names_the_document_that_is_broken() {
        let err = parse(
            "k8s/x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "k8s/x.yaml#1: a document without apiVersion, kind or metadata.name"
        );
        let err = parse("k8s/y.yaml", "a: [1,\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("k8s/y.yaml: not YAML: error: line 1 column 4"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unlabelled_and_duplicate_objects() {
        let doc = |name: &str, env: &str| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    {ENVIRONMENT_LABEL}: {env}\n")
        };
        let tree = |text: String| BTreeMap::from([(PathBuf::from("k8s/a.yaml"), text)]);
        assert!(from_tree(&tree(doc("a", "staging")), "staging").is_ok());
        let err = from_tree(&tree(doc("a", "production")), "staging").unwrap_err();
        assert!(matches!(err, ManifestError::Unlabelled { .. }), "{err}");
        let err =
            from_tree(&tree(doc("a", "staging") + &doc("a", "staging")), "staging").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap a is rendered twice: k8s/a.yaml#1 and k8s/a.yaml#2"
        );
        let terraform_only = BTreeMap::from([(PathBuf::from("terraform/main.tf"), String::new())]);
        assert_eq!(
            from_tree(&terraform_only, "staging").unwrap_err(),
            ManifestError::Empty
        );
    }
}
