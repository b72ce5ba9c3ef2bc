//! `.shopctl/<env>/up.json`: which steps of `shopctl up <env>` are done, when, and with
//! which inputs, so that a re-run skips what is done with the same inputs.
//!
//! A step's inputs are named fingerprints (the config file's hash, the commit, the image
//! digest...). A step is recorded only when it succeeded; starting a step forgets its own
//! record and every later one, so a step that fails, and everything after it, runs again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Step;

/// A step's inputs (or outputs), by name.
pub type Facts = BTreeMap<String, String>;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Finished steps by name (`terraform`, `image-build`, ...).
    #[serde(default)]
    pub steps: BTreeMap<String, Done>,
}

/// A finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub seconds: f64,
    pub inputs: Facts,
    /// What later steps need from it (e.g. the image digest).
    #[serde(default)]
    pub outputs: Facts,
    /// One line on what it did.
    pub summary: String,
}

/// What to do with a step, given its inputs now.
#[derive(Debug, PartialEq)]
pub enum Decision<'a> {
    NotDone,
    /// Done with these very inputs.
    Same(&'a Done),
    /// Done, but these inputs differ since.
    Changed {
        done: &'a Done,
        what: Vec<String>,
    },
}

impl Progress {
    pub const FILE: &'static str = "up.json";

    /// The recorded progress; none when the file does not exist.
    pub fn load(path: &Path) -> Result<Progress> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a progress record of `shopctl up`\n  hint: --restart ignores it and runs every step",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes through a temporary file and a rename: never half a record.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        crate::image::layout::write_atomically(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn decide(&self, step: Step, inputs: &Facts) -> Decision<'_> {
        let Some(done) = self.steps.get(step.name()) else {
            return Decision::NotDone;
        };
        let mut what: Vec<String> = inputs
            .iter()
            .filter(|(k, v)| done.inputs.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        what.extend(
            done.inputs
                .keys()
                .filter(|k| !inputs.contains_key(*k))
                .cloned(),
        );
        if what.is_empty() {
            Decision::Same(done)
        } else {
            Decision::Changed { done, what }
        }
    }

    pub fn record(&mut self, step: Step, done: Done) {
        self.steps.insert(step.name().to_owned(), done);
    }

    /// Forgets `step` and every step after it.
    pub fn forget_from(&mut self, step: Step) {
        for later in Step::ALL.into_iter().filter(|s| *s >= step) {
            self.steps.remove(later.name());
        }
    }
}

/// `14:02 UTC` for today, `2025-11-24 14:02 UTC` for another day, from RFC 3339 (UTC).
pub fn when(finished_at: &str, today: &str) -> String {
    let (date, rest) = finished_at.split_once('T').unwrap_or((finished_at, ""));
    let hm: String = rest.chars().take(5).collect();
    if date == today {
        format!("{hm} UTC")
    } else {
        format!("{date} {hm} UTC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, &str)]) -> Facts {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn done(inputs: Facts) -> Done {
        Done {
            finished_at: "2025-11-24T14:02:33Z".into(),
            seconds: 1.5,
            inputs,
            outputs: Facts::new(),
            summary: "ok".into(),
        }
    }

    #[test]
    fn a_step_is_done_only_with_the_same_inputs() {
        let mut progress = Progress::default();
        let inputs = facts(&[("commit", "abc"), ("binary", "123")]);
        assert_eq!(
            progress.decide(Step::ImageBuild, &inputs),
            Decision::NotDone
        );
        progress.record(Step::ImageBuild, done(inputs.clone()));
        assert!(matches!(
            progress.decide(Step::ImageBuild, &inputs),
            Decision::Same(_)
        ));
        let other = facts(&[("commit", "def"), ("binary", "123")]);
        match progress.decide(Step::ImageBuild, &other) {
            Decision::Changed { what, .. } => assert_eq!(what, ["commit"]),
            d => panic!("{d:?}"),
        }
        // An input that appeared or disappeared is a change too.
        let fewer = facts(&[("commit", "abc")]);
        match progress.decide(Step::ImageBuild, &fewer) {
            Decision::Changed { what, .. } => assert_eq!(what, ["binary"]),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn forgetting_a_step_forgets_every_later_one() {
        let mut progress = Progress::default();
        for step in Step::ALL {
            progress.record(step, done(Facts::new()));
        }
        progress.forget_from(Step::ImagePush);
        let left: Vec<&str> = Step::ALL
            .into_iter()
            .filter(|s| progress.steps.contains_key(s.name()))
            .map(Step::name)
            .collect();
        assert_eq!(left, ["terraform", "image-build"]);
    }

    #[test]
    fn the_record_round_trips_and_a_damaged_one_names_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("staging").join(Progress::FILE);
        assert!(Progress::load(&file).unwrap().steps.is_empty());
        let mut progress = Progress::default();
        progress.record(Step::Terraform, done(facts(&[("config", "1")])));
        progress.save(&file).unwrap();
        let again = Progress::load(&file).unwrap();
        assert_eq!(again.steps, progress.steps);
        std::fs::write(&file, "[").unwrap();
        let error = format!("{:#}", Progress::load(&file).unwrap_err());
        assert!(error.contains("--restart"), "{error}");
    }

    #[test]
    fn times_of_today_show_the_hour_only() {
        assert_eq!(when("2025-11-24T14:02:33Z", "2025-11-24"), "14:02 UTC");
        assert_eq!(
            when("2025-11-23T09:15:00Z", "2025-11-24"),
            "2025-11-23 09:15 UTC"
        );
    }
}
