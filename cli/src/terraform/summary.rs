//! What a plan will do, counted from `terraform show -json <plan>`.

use serde::Deserialize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Summary {
    pub fn is_empty(&self) -> bool {
        *self == Summary::default()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to destroy",
            self.add, self.change, self.destroy
        )
    }
}

#[derive(Deserialize)]
struct PlanJson {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
}

#[derive(Deserialize)]
struct ResourceChange {
    change: Change,
}

#[derive(Deserialize)]
struct Change {
    actions: Vec<String>,
}

/// Counts as Terraform's own "Plan:" line does: a replacement is one add
/// and one destroy; reads and no-ops are not counted.
pub fn from_plan_json(json: &[u8]) -> Result<Summary, serde_json::Error> {
    let plan: PlanJson = serde_json::from_slice(json)?;
    let mut summary = Summary::default();
    for rc in plan.resource_changes {
        for action in &rc.change.actions {
            match action.as_str() {
                "create" => summary.add += 1,
                "update" => summary.change += 1,
                "delete" => summary.destroy += 1,
                _ => {}
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_terraform() {
        let json = br#"{"resource_changes":[
            {"change":{"actions":["create"]}},
            {"change":{"actions":["delete","create"]}},
            {"change":{"actions":["update"]}},
            {"change":{"actions":["no-op"]}},
            {"change":{"actions":["read"]}}]}"#;
        assert_eq!(
            from_plan_json(json).unwrap(),
            Summary {
                add: 2,
                change: 1,
                destroy: 1
            }
        );
        assert!(from_plan_json(b"{}").unwrap().is_empty());
    }
}
