//! Deployed revisions, kept in the cluster beside what they deployed: one ConfigMap per
//! revision (`shopctl-revision-<n>`) holding its record and the applied objects, gzipped.
//! The ConfigMaps do not carry the environment's prune label, so no deploy prunes them.

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::manifest::{Key, Object, MANAGED_BY, MANAGED_BY_LABEL};

/// The label the revision ConfigMaps carry (value: the environment).
pub const HISTORY_LABEL: &str = "shop.example.com/deploy-history";
/// How many revisions are kept; older ones are deleted after a deploy.
pub const KEEP: usize = 10;

/// How a revision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Being applied now (or the deploy was interrupted).
    InProgress,
    /// Every workload became ready.
    Deployed,
    /// Not ready in time, kept as it was (`--no-rollback`).
    Failed,
    /// Not ready in time, and the previous good revision was applied again.
    RolledBack,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in-progress",
            Outcome::Deployed => "deployed",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
        }
    }
}

/// One deploy's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub number: u32,
    /// The app image, `repository@sha256:…`.
    pub image: String,
    /// The commit the manifests were rendered from (`-dirty` when the tree was).
    pub commit: String,
    /// Unix seconds.
    pub started: u64,
    pub finished: Option<u64>,
    pub outcome: Outcome,
    /// Why it failed, or which revision it rolled back to / re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The objects it applied (to know what to prune next time).
    pub keys: Vec<Key>,
}

impl Revision {
    pub fn config_map_name(number: u32) -> String {
        format!("shopctl-revision-{number}")
    }

    /// The digest part of the image reference.
    pub fn digest(&self) -> &str {
        self.image
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or(&self.image)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistoryError {
    #[error(
        "no revision has been deployed to {env} yet\n  hint: `shopctl deploy {env}` deploys one"
    )]
    Empty { env: String },
    #[error("revision {number} does not exist in {env}; revisions: {known}\n  hint: `shopctl history {env}` lists them")]
    NoSuchRevision {
        env: String,
        number: u32,
        known: String,
    },
    #[error("revision {number} of {env} is {outcome}: only a revision that deployed can be returned to\n  hint: `shopctl history {env}` lists them")]
    NotGood {
        env: String,
        number: u32,
        outcome: &'static str,
    },
    #[error("{env} has no good revision before {current} to return to\n  hint: `shopctl history {env}` lists them; `--to REV` picks one")]
    NothingBefore { env: String, current: u32 },
    #[error("the revision record {name} is unreadable: {reason}")]
    Unreadable { name: String, reason: String },
}

/// The number the next deploy records.
pub fn next_number(revisions: &[Revision]) -> u32 {
    revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1
}

/// The revision running now: the newest that deployed.
pub fn current(revisions: &[Revision]) -> Option<&Revision> {
    revisions
        .iter()
        .filter(|r| r.outcome == Outcome::Deployed)
        .max_by_key(|r| r.number)
}

/// The newest good revision older than `before`: what a failed deploy returns to.
pub fn last_good_before(revisions: &[Revision], before: u32) -> Option<&Revision> {
    revisions
        .iter()
        .filter(|r| r.outcome == Outcome::Deployed && r.number < before)
        .max_by_key(|r| r.number)
}

/// What `shopctl rollback` returns to: `--to` (which must have deployed), else the good
/// revision before the current one.
pub fn rollback_target<'a>(
    env: &str,
    revisions: &'a [Revision],
    to: Option<u32>,
) -> Result<&'a Revision, HistoryError> {
    if revisions.is_empty() {
        return Err(HistoryError::Empty { env: env.into() });
    }
    match to {
        Some(number) => {
            let revision = revisions
                .iter()
                .find(|r| r.number == number)
                .ok_or_else(|| {
                    let mut known: Vec<u32> = revisions.iter().map(|r| r.number).collect();
                    known.sort();
                    HistoryError::NoSuchRevision {
                        env: env.into(),
                        number,
                        known: known
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
            if revision.outcome != Outcome::Deployed {
                return Err(HistoryError::NotGood {
                    env: env.into(),
                    number,
                    outcome: revision.outcome.as_str(),
                });
            }
            Ok(revision)
        }
        None => {
            let current = current(revisions)
                .map(|r| r.number)
                .unwrap_or_else(|| next_number(revisions));
            last_good_before(revisions, current).ok_or(HistoryError::NothingBefore {
                env: env.into(),
                current,
            })
        }
    }
}

/// Revisions beyond the newest `keep`, to delete.
pub fn expired(revisions: &[Revision], keep: usize) -> Vec<u32> {
    let mut numbers: Vec<u32> = revisions.iter().map(|r| r.number).collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.into_iter().skip(keep).collect()
}

/// The ConfigMap recording a revision and the objects it applied.
pub fn to_config_map(revision: &Revision, objects: &[Object], namespace: &str, env: &str) -> Value {
    let values: Vec<&Value> = objects.iter().map(|o| &o.value).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&serde_json::to_vec(&values).expect("objects serialize"))
        .expect("writing to memory");
    let compressed = gz.finish().expect("writing to memory");
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": Revision::config_map_name(revision.number),
            "namespace": namespace,
            "labels": {
                HISTORY_LABEL: env,
                MANAGED_BY_LABEL: MANAGED_BY,
                "app.kubernetes.io/part-of": "shop",
            },
        },
        "data": { "revision.json": serde_json::to_string(revision).expect("revision serializes") },
        "binaryData": { "objects.json.gz": base64::engine::general_purpose::STANDARD.encode(compressed) },
    })
}

/// The record of a revision ConfigMap.
pub fn revision_of(config_map: &Value) -> Result<Revision, HistoryError> {
    let name = config_map["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let text = config_map["data"]["revision.json"]
        .as_str()
        .ok_or_else(|| HistoryError::Unreadable {
            name: name.clone(),
            reason: "no data.revision.json".into(),
        })?;
    serde_json::from_str(text).map_err(|e| HistoryError::Unreadable {
        name,
        reason: e.to_string(),
    })
}

/// The objects a revision ConfigMap recorded, to apply them again.
pub fn objects_of(config_map: &Value) -> Result<Vec<Object>, HistoryError> {
    let name = config_map["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let unreadable = |reason: String| HistoryError::Unreadable {
        name: name.clone(),
        reason,
    };
    let encoded = config_map["binaryData"]["objects.json.gz"]
        .as_str()
        .ok_or_else(|| unreadable("no binaryData.objects.json.gz".into()))?;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .map_err(|e| unreadable(e.to_string()))?;
    let values: Vec<Value> =
        serde_json::from_slice(&json).map_err(|e| unreadable(e.to_string()))?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let key = Key::of(&value)
                .ok_or_else(|| unreadable(format!("object {} has no name", i + 1)))?;
            Ok(Object {
                key,
                value,
                source: format!("{name}#{}", i + 1),
            })
        })
        .collect()
}

/// `shopctl history`'s table, newest first.
pub fn table(revisions: &[Revision]) -> String {
    let mut sorted: Vec<&Revision> = revisions.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.number));
    let current = current(revisions).map(|r| r.number);
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header([
            "rev",
            "result",
            "deployed (UTC)",
            "took",
            "commit",
            "image digest",
            "note",
        ]);
    for r in sorted {
        let result = match (r.outcome, Some(r.number) == current) {
            (Outcome::Deployed, true) => "deployed (current)".to_owned(),
            (outcome, _) => outcome.as_str().to_owned(),
        };
        let took = r
            .finished
            .map(|f| format!("{} s", f.saturating_sub(r.started)))
            .unwrap_or_else(|| "-".into());
        let digest = r.digest();
        let short = digest.get(..19).unwrap_or(digest);
        table.add_row([
            r.number.to_string(),
            result,
            format_time(r.started),
            took,
            r.commit.clone(),
            short.to_owned(),
            r.note.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

fn format_time(unix: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testing::rendered;

    fn revision(number: u32, outcome: Outcome) -> Revision {
        Revision {
            number,
            image: format!("127.0.0.1:5000/shop-app@sha256:{:064x}", number),
            commit: format!("abc{number}"),
            started: 1_800_000_000 + u64::from(number) * 100,
            finished: Some(1_800_000_000 + u64::from(number) * 100 + 42),
            outcome,
            note: None,
            keys: vec![],
        }
    }

    #[test]
    fn picks_the_revision_to_return_to() {
        use Outcome::*;
        let history = vec![
            revision(1, Deployed),
            revision(2, Deployed),
            revision(3, RolledBack),
            revision(4, Deployed),
            revision(5, Failed),
        ];
        assert_eq!(next_number(&history), 6);
        assert_eq!(current(&history).unwrap().number, 4);
        // A failed deploy returns to the newest good one before it.
        assert_eq!(last_good_before(&history, 5).unwrap().number, 4);
        assert_eq!(last_good_before(&history, 4).unwrap().number, 2);
        assert!(last_good_before(&history, 1).is_none());
        // `rollback` without --to: the good revision before the current one.
        assert_eq!(
            rollback_target("staging", &history, None).unwrap().number,
            2
        );
        assert_eq!(
            rollback_target("staging", &history, Some(1))
                .unwrap()
                .number,
            1
        );
        assert_eq!(
            rollback_target("staging", &history, Some(3)).unwrap_err(),
            HistoryError::NotGood {
                env: "staging".into(),
                number: 3,
                outcome: "rolled-back"
            }
        );
        let err = rollback_target("staging", &history, Some(9)).unwrap_err();
        assert!(
            err.to_string().contains("revisions: 1, 2, 3, 4, 5"),
            "{err}"
        );
        assert!(matches!(
            rollback_target("staging", &[], None),
            Err(HistoryError::Empty { .. })
        ));
        assert!(matches!(
            rollback_target("staging", &[revision(1, Deployed)], None),
            Err(HistoryError::NothingBefore { current: 1, .. })
        ));
    }

    #[test]
    fn keeps_the_newest_revisions() {
        let history: Vec<Revision> = (1..=13).map(|n| revision(n, Outcome::Deployed)).collect();
        assert_eq!(expired(&history, KEEP), vec![3, 2, 1]);
        assert!(expired(&history[..5], KEEP).is_empty());
    }

    #[test]
    fn a_revision_round_trips_through_its_config_map() {
        let objects = rendered("staging");
        let mut record = revision(7, Outcome::Deployed);
        record.keys = objects.iter().map(|o| o.key.clone()).collect();
        let config_map = to_config_map(&record, &objects, "shop", "staging");
        assert_eq!(config_map["metadata"]["name"], "shopctl-revision-7");
        assert_eq!(config_map["metadata"]["labels"][HISTORY_LABEL], "staging");
        // Not carrying the environment label, a record is never pruned by a deploy.
        assert!(
            config_map["metadata"]["labels"][super::super::manifest::ENVIRONMENT_LABEL].is_null()
        );
        // Well inside a ConfigMap's 1 MiB.
        let size = serde_json::to_vec(&config_map).unwrap().len();
        assert!(size < 256 * 1024, "{size} bytes");
        assert_eq!(revision_of(&config_map).unwrap(), record);
        let back = objects_of(&config_map).unwrap();
        assert_eq!(back.len(), objects.len());
        for (a, b) in back.iter().zip(&objects) {
            assert_eq!((&a.key, &a.value), (&b.key, &b.value));
        }
        let mut broken = config_map.clone();
        broken["binaryData"]["objects.json.gz"] = json!("not base64!");
        assert!(matches!(
            objects_of(&broken),
            Err(HistoryError::Unreadable { .. })
        ));
    }

    #[test]
    fn the_table_marks_the_current_revision() {
        let mut failed = revision(3, Outcome::RolledBack);
        failed.note = Some("not ready in 600 s; returned to 2".into());
        let table = table(&[
            revision(1, Outcome::Deployed),
            revision(2, Outcome::Deployed),
            failed,
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("rev"), "{table}");
        assert!(
            lines[3].contains(" 3 ")
                && lines[3].contains("rolled-back")
                && lines[3].contains("returned to 2"),
            "{table}"
        );
        assert!(
            lines[4].contains("deployed (current)") && lines[4].contains("sha256:000000000000"),
            "{table}"
        );
        assert!(table.contains("2027-01-15"), "{table}");
    }
}
