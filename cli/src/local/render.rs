//! Renders `templates/local/*.hbs` (Patroni, etcd, HAProxy, nginx) into the state
//! directory's `conf/` with the project's handlebars machinery (strict mode: a missing value
//! fails with the template's line). Per-member files are rendered once per member.

use std::path::Path;

use serde_json::{json, Value};

use crate::render::{RenderError, Templates, Tree};

use super::topology::{Topology, SCOPE};

/// `conf/` files by name (`patroni-pg-1.yml`, `etcd-etcd-1.yml`, `haproxy.cfg`, `nginx.conf`).
pub fn render(
    templates_dir: &Path,
    topology: &Topology,
    pg_bin: &Path,
) -> Result<Tree, RenderError> {
    let templates = Templates::load_trees(templates_dir, Path::new("templates"), &["local"])?;
    let base = context(topology, pg_bin);
    let mut out = Tree::new();
    // Rendering with the first member's data gives the shared files too.
    for (i, pg) in topology.pg.iter().enumerate() {
        let etcd = topology.etcd.get(i).unwrap_or(&topology.etcd[0]);
        let mut context = base.clone();
        context["pg"] = json!({
            "name": pg.name,
            "port": pg.postgres_port,
            "rest_port": pg.rest_port,
            "dir": pg.dir,
            "data_dir": pg.data_dir,
        });
        context["etcd"] = serde_json::to_value(etcd).expect("serializes");
        let tree = templates.render_value(&context)?;
        take(
            &tree,
            &mut out,
            "patroni.yml",
            &format!("patroni-{}.yml", pg.name),
        );
        if i == 0 {
            take(&tree, &mut out, "haproxy.cfg", "haproxy.cfg");
            take(&tree, &mut out, "nginx.conf", "nginx.conf");
        }
    }
    for etcd in &topology.etcd {
        let mut context = base.clone();
        context["pg"] = json!({"name": "", "port": 0, "rest_port": 0, "dir": "", "data_dir": ""});
        context["etcd"] = serde_json::to_value(etcd).expect("serializes");
        let tree = templates.render_value(&context)?;
        take(
            &tree,
            &mut out,
            "etcd.yml",
            &format!("etcd-{}.yml", etcd.name),
        );
    }
    Ok(out)
}

fn take(tree: &Tree, out: &mut Tree, template: &str, name: &str) {
    if let Some(text) = tree.get(&Path::new("local").join(template)) {
        out.insert(name.into(), text.clone());
    }
}

fn context(t: &Topology, pg_bin: &Path) -> Value {
    let etcd_hosts: Vec<String> = t
        .etcd
        .iter()
        .map(|e| format!("127.0.0.1:{}", e.client_port))
        .collect();
    let initial: Vec<String> = t
        .etcd
        .iter()
        .map(|e| format!("{}=http://127.0.0.1:{}", e.name, e.peer_port))
        .collect();
    json!({
        "scope": SCOPE,
        "state_dir": t.state_dir,
        "pg_bin": pg_bin,
        "ports": t.ports,
        "patroni": t.patroni,
        "etcd_hosts": etcd_hosts.join(","),
        "etcd_initial_cluster": initial.join(","),
        "pg_nodes": t.pg.iter().map(|p| json!({
            "name": p.name, "port": p.postgres_port, "rest_port": p.rest_port,
        })).collect::<Vec<_>>(),
        "apps": t.apps,
    })
}
