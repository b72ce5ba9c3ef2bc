//! The capacity preflight: whether every pod of an environment schedules on its EKS node
//! groups, before anything is rendered to disk, planned or applied. Inputs are the node
//! groups of the environment file (instance types, min, max) and every workload of the
//! rendered manifests plus the add-ons we do not render; the answer is a placement, with
//! headroom per node, or the pods that do not fit and the smallest change that would.
//! docs/k8s.md ("Capacity") lists the rules and what is not modelled.

mod addons;
mod allocatable;
pub mod catalog;
pub mod connections;
mod quantity;
mod report;
mod schedule;
mod suggest;
mod workloads;

use crate::config::{LoadedEnvironment, Tier};
use crate::deploy::manifest::{self, ManifestError};
use crate::render::Tree;

pub use report::Assessment;
pub use schedule::Scenario;

/// How `shopctl capacity` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("{0}")]
    Manifests(#[from] ManifestError),
    #[error("{0}")]
    Workload(#[from] workloads::WorkloadError),
    #[error("{env} is a local environment: it runs as processes on this machine, and its EKS stack (on the AWS emulator) runs no pods, so there is no capacity to check\n  hint: `shopctl capacity staging` or `production`")]
    Local { env: String },
    #[error("{0}")]
    DoesNotFit(String),
}

/// The rendered workloads of shopctl's own services, by the config keys of their requests.
const CONFIG_KEYS: &[(&str, &str)] = &[
    ("shop-app", "services.app"),
    ("shop-worker", "services.worker"),
    ("shop-postgres", "services.patroni"),
    ("shop-kafka", "services.kafka"),
    ("shop-rabbitmq", "services.rabbitmq"),
    ("shop-redis-primary", "services.redis"),
    ("shop-redis-replica", "services.redis"),
];

/// What is placed: the node groups and the workloads (rendered, then the add-ons).
fn inputs(env: &LoadedEnvironment, tree: &Tree) -> Result<schedule::Inputs, CapacityError> {
    let objects = manifest::from_tree(tree, &env.name)?;
    let mut rendered = workloads::extract(&objects)?;
    for w in &mut rendered {
        w.config_key = CONFIG_KEYS
            .iter()
            .find(|(name, _)| *name == w.name)
            .map(|(_, key)| (*key).to_owned());
    }
    let groups = env
        .config
        .eks
        .node_groups
        .iter()
        .enumerate()
        .map(|(index, g)| {
            // The config validation refuses types not in the catalog.
            let types: Vec<&'static catalog::InstanceType> = g
                .instance_types
                .iter()
                .filter_map(|n| catalog::lookup(n))
                .collect();
            let allocatable = types
                .iter()
                .map(|t| allocatable::of(t))
                .reduce(allocatable::Allocatable::min)
                .unwrap_or(allocatable::Allocatable {
                    cpu_millis: 0,
                    memory_bytes: 0,
                    pods: 0,
                });
            schedule::Group {
                index,
                name: g.name.to_string(),
                instance_types: types.iter().map(|t| t.name).collect(),
                allocatable,
                min: g.min,
                max: g.max,
            }
        })
        .collect();
    Ok(schedule::Inputs {
        groups,
        workloads: addons::with_add_ons(rendered),
        zones: env.config.aws.availability_zones.clone(),
    })
}

/// Places the environment's pods in both scenarios and, when they do not fit, finds the
/// changes that would.
pub fn assess(env: &LoadedEnvironment, tree: &Tree) -> Result<Assessment, CapacityError> {
    let inputs = inputs(env, tree)?;
    let scenarios: Vec<_> = [Scenario::Minimum, Scenario::Peak]
        .into_iter()
        .map(|s| schedule::place(&inputs, s))
        .collect();
    let fits = scenarios.iter().all(schedule::Placement::fits);
    Ok(Assessment {
        env: env.name.clone(),
        file: format!("environments/{}.toml", env.name),
        fits,
        groups: inputs.groups.clone(),
        suggestions: if fits {
            Vec::new()
        } else {
            suggest::suggest(&inputs)
        },
        scenarios,
        connections: connections::Budget::of(&env.config.services),
    })
}

/// The check `render`, `plan` and `deploy` run first: an error naming the pods that do not
/// fit. Local environments run as processes and are not checked.
pub fn preflight(env: &LoadedEnvironment, tree: &Tree) -> Result<(), CapacityError> {
    if env.config.tier == Tier::Local {
        return Ok(());
    }
    let assessment = assess(env, tree)?;
    if assessment.fits {
        Ok(())
    } else {
        Err(CapacityError::DoesNotFit(report::failure(&assessment)))
    }
}

/// `shopctl capacity <env>`: prints the placement (table or JSON); Ok(false) when the
/// pods do not fit, after printing why.
pub fn run(env: &LoadedEnvironment, tree: &Tree, options: Options) -> Result<bool, CapacityError> {
    if env.config.tier == Tier::Local {
        return Err(CapacityError::Local {
            env: env.name.clone(),
        });
    }
    let assessment = assess(env, tree)?;
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&assessment).expect("the assessment serializes")
        );
    } else {
        println!("{}", report::table(&assessment));
    }
    if !assessment.fits {
        eprintln!("error: {}", report::failure(&assessment));
    }
    Ok(assessment.fits)
}
