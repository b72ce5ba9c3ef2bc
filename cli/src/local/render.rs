//! Renders `templates/local/*.hbs` (Patroni, etcd, HAProxy, nginx) into the state
//! directory's `conf/` with the project's handlebars machinery (strict mode: a missing value
//! fails with the template's line). Per-member files are rendered once per member.

use std::path::Path;

use serde_json::{json, Value};

use crate::render::{RenderError, Templates, Tree};

use super::topology::{Topology, SCOPE};

/// Patroni's `on_stop` and `on_role_change` callback: wakes the other members' loops.
pub const PATRONI_WAKE: &str = include_str!("../../../templates/local/patroni_wake.sh");
/// Its file name in `conf/`.
pub const PATRONI_WAKE_FILE: &str = "patroni_wake.sh";

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
            "wake_command": wake_command(topology, &pg.name),
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
        context["pg"] =
            json!({"name": "", "port": 0, "rest_port": 0, "dir": "", "data_dir": "", "wake_command": ""});
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

/// The callback command line for one member: the wake script and every other member's
/// REST API (Patroni splits it shell-style and appends action, role and scope).
fn wake_command(t: &Topology, member: &str) -> String {
    let script = t.conf_dir().join(PATRONI_WAKE_FILE);
    let mut words = vec![script.to_string_lossy().into_owned()];
    words.extend(
        t.pg.iter()
            .filter(|p| p.name != member)
            .map(|p| format!("http://127.0.0.1:{}", p.rest_port)),
    );
    shlex::try_join(words.iter().map(String::as_str)).expect("no NUL in paths")
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::LoadedEnvironment;

    use super::*;

    #[test]
    fn each_member_wakes_the_other_two_with_a_quoted_script_path() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("environments/local.toml")).unwrap();
        let env = LoadedEnvironment {
            name: "local".into(),
            config: crate::config::parse(&text, Path::new("environments/local.toml")).unwrap(),
        };
        let state = Path::new("/tmp/a state dir");
        let topology = super::super::topology::local_topology(state, &env).unwrap();
        let tree = render(&root.join("templates"), &topology, Path::new("/pg/bin")).unwrap();
        let rest: Vec<u16> = topology.pg.iter().map(|p| p.rest_port).collect();
        let yml = &tree[Path::new("patroni-pg-1.yml")];
        let line = yml
            .lines()
            .find(|l| l.trim_start().starts_with("on_stop:"))
            .expect("on_stop callback");
        let command: String = serde_json::from_str(line.split_once(':').unwrap().1.trim()).unwrap();
        let words = shlex::split(&command).unwrap();
        assert_eq!(
            words,
            [
                state.join("conf/patroni_wake.sh").display().to_string(),
                format!("http://127.0.0.1:{}", rest[1]),
                format!("http://127.0.0.1:{}", rest[2]),
            ]
        );
        assert!(yml.contains("on_role_change:"));
    }
}
