//! What a server-side dry run says would change: the object as it is, against the object
//! the API server returned for the dry-run apply (defaults and all), minus the fields the
//! server changes on every write.

use serde_json::Value;

/// What would happen to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create,
    /// The fields that would change, as dotted paths (`spec.template.spec.containers`).
    Update(Vec<String>),
    Unchanged,
}

/// Fields the server sets on every write, which say nothing about what changed.
const VOLATILE: [&str; 6] = [
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "uid",
    "selfLink",
];

/// Compares the live object (None: it does not exist) with the dry-run result.
pub fn change(live: Option<&Value>, after: &Value) -> Change {
    let Some(live) = live else {
        return Change::Create;
    };
    let mut paths = Vec::new();
    for field in [
        "metadata",
        "spec",
        "data",
        "binaryData",
        "stringData",
        "rules",
        "roleRef",
        "subjects",
        "type",
    ] {
        compare(
            field,
            &clean(field, &live[field]),
            &clean(field, &after[field]),
            &mut paths,
            0,
        );
    }
    if paths.is_empty() {
        Change::Unchanged
    } else {
        Change::Update(paths)
    }
}

fn clean(field: &str, value: &Value) -> Value {
    let mut value = value.clone();
    if field == "metadata" {
        if let Some(map) = value.as_object_mut() {
            for key in VOLATILE {
                map.remove(key);
            }
        }
    }
    value
}

/// Dotted paths where the two differ, down to three levels below the top field (deeper
/// differences are reported at that depth: enough to say what moved, short to read).
fn compare(path: &str, a: &Value, b: &Value, out: &mut Vec<String>, depth: usize) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if depth < 3 => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let null = Value::Null;
                compare(
                    &format!("{path}.{key}"),
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    out,
                    depth + 1,
                );
            }
        }
        _ => out.push(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_create_unchanged_and_the_paths_that_change() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop-app", "resourceVersion": "41", "generation": 3, "uid": "u",
                         "managedFields": [{"manager": "shopctl"}], "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "x@sha256:1"}]}}},
            "status": {"readyReplicas": 2},
        });
        assert_eq!(change(None, &live), Change::Create);

        // The server bumps resourceVersion and managedFields on a dry run; status differs.
        let mut same = live.clone();
        same["metadata"]["resourceVersion"] = json!("42");
        same["metadata"]["managedFields"] = json!([]);
        same["status"] = json!({});
        assert_eq!(change(Some(&live), &same), Change::Unchanged);

        let mut new_image = same.clone();
        new_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x@sha256:2");
        new_image["metadata"]["labels"]["b"] = json!("2");
        assert_eq!(
            change(Some(&live), &new_image),
            Change::Update(vec![
                "metadata.labels.b".into(),
                "spec.template.spec.containers".into()
            ])
        );
    }
}
