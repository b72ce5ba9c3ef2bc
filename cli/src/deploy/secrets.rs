//! The Secrets the pods read (docs/k8s.md, "Secrets"), generated at the first deploy and
//! never rendered, logged or overwritten. They are one set: the `shop` database password
//! is in both `shop-app` (its URLs) and `shop-postgres-credentials`, so a set with some
//! Secrets missing is refused rather than completed with new passwords that would not
//! match the ones in use.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::manifest::{MANAGED_BY, MANAGED_BY_LABEL};

/// The label generated Secrets carry (value: the environment). Not the prune label: a
/// deploy never deletes them; `down` does, with the namespace.
pub const GENERATED_LABEL: &str = "shop.example.com/generated-for";

pub const APP: &str = "shop-app";
pub const POSTGRES: &str = "shop-postgres-credentials";
pub const RABBITMQ_USERS: &str = "shop-rabbitmq-users";
pub const RABBITMQ_COOKIE: &str = "shop-rabbitmq-erlang-cookie";
pub const REDIS: &str = "shop-redis";
pub const NAMES: [&str; 5] = [APP, POSTGRES, RABBITMQ_USERS, RABBITMQ_COOKIE, REDIS];

/// The user of Patroni's REST API write endpoints (basic authentication); its password is
/// generated. Both are in the Secret [`POSTGRES`], so a client needs nothing but the Secret.
pub const PATRONI_RESTAPI_USER: &str = "patroni";

/// The generated values, never printed (Debug shows none of them).
pub struct Passwords {
    pub postgres: String,
    pub replication: String,
    pub rewind: String,
    /// Patroni's REST API (write endpoints).
    pub patroni_api: String,
    pub shop_db: String,
    pub amqp: String,
    pub redis: String,
    pub erlang_cookie: String,
    pub jwt: String,
    pub webhook: String,
    /// The 4-byte salt of RabbitMQ's password hash.
    pub amqp_salt: [u8; 4],
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords { .. }")
    }
}

impl Passwords {
    pub fn generate() -> std::io::Result<Passwords> {
        let hex = crate::local::secrets::random_hex;
        let salt = hex(4)?;
        let mut amqp_salt = [0u8; 4];
        for (i, byte) in amqp_salt.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&salt[2 * i..2 * i + 2], 16).expect("hex");
        }
        Ok(Passwords {
            postgres: hex(24)?,
            replication: hex(24)?,
            rewind: hex(24)?,
            patroni_api: hex(24)?,
            shop_db: hex(24)?,
            amqp: hex(24)?,
            redis: hex(24)?,
            erlang_cookie: hex(32)?,
            jwt: hex(32)?,
            webhook: hex(32)?,
            amqp_salt,
        })
    }
}

/// What the deploy does about the Secrets.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// None exists: create them all.
    CreateAll,
    /// All exist: leave them.
    Keep,
    /// Some exist, some do not: refuse (see the module docs).
    Partial { missing: Vec<&'static str> },
}

pub fn plan(existing: &BTreeSet<String>) -> Plan {
    let missing: Vec<&'static str> = NAMES
        .iter()
        .copied()
        .filter(|n| !existing.contains(*n))
        .collect();
    match missing.len() {
        0 => Plan::Keep,
        n if n == NAMES.len() => Plan::CreateAll,
        _ => Plan::Partial { missing },
    }
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)).
pub fn rabbitmq_hash(password: &str, salt: [u8; 4]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    let mut bytes = salt.to_vec();
    bytes.extend_from_slice(&hasher.finalize());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The five Secrets, with `stringData`, for the namespace.
pub fn objects(passwords: &Passwords, namespace: &str, env: &str) -> Vec<Value> {
    let p = passwords;
    let svc = |name: &str| format!("{name}.{namespace}.svc");
    let users = json!({
        "users": [{
            "name": "shop",
            "password_hash": rabbitmq_hash(&p.amqp, p.amqp_salt),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "shop", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    });
    let secret = |name: &str, data: Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    GENERATED_LABEL: env,
                    MANAGED_BY_LABEL: MANAGED_BY,
                    "app.kubernetes.io/part-of": "shop",
                },
            },
            "stringData": data,
        })
    };
    vec![
        secret(
            APP,
            json!({
                "database-url": format!("postgres://shop:{}@{}:5432/shop", p.shop_db, svc("shop-postgres-primary")),
                "database-read-url": format!("postgres://shop:{}@{}:5432/shop", p.shop_db, svc("shop-postgres-replica")),
                "amqp-url": format!("amqp://shop:{}@{}:5672/%2f", p.amqp, svc("shop-rabbitmq")),
                "redis-url": format!("redis://:{}@{}:6379/0", p.redis, svc("shop-redis-primary")),
                "jwt-secret": p.jwt,
                "webhook-secret": p.webhook,
            }),
        ),
        secret(
            POSTGRES,
            json!({
                "PATRONI_SUPERUSER_PASSWORD": p.postgres,
                "PATRONI_REPLICATION_PASSWORD": p.replication,
                "PATRONI_REWIND_PASSWORD": p.rewind,
                // Patroni's REST API: basic authentication on its write endpoints.
                "PATRONI_RESTAPI_USERNAME": PATRONI_RESTAPI_USER,
                "PATRONI_RESTAPI_PASSWORD": p.patroni_api,
                // Read by the post-bootstrap script that creates the `shop` role and database.
                "SHOP_DB_PASSWORD": p.shop_db,
            }),
        ),
        secret(RABBITMQ_USERS, json!({ "users.json": users.to_string() })),
        secret(RABBITMQ_COOKIE, json!({ "cookie": p.erlang_cookie })),
        secret(REDIS, json!({ "auth": p.redis })),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::testing::rendered;

    #[test]
    fn creates_all_keeps_all_or_refuses_a_partial_set() {
        assert_eq!(plan(&BTreeSet::new()), Plan::CreateAll);
        let all: BTreeSet<String> = NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(plan(&all), Plan::Keep);
        let mut some = all.clone();
        some.remove(APP);
        some.remove(REDIS);
        assert_eq!(
            plan(&some),
            Plan::Partial {
                missing: vec![APP, REDIS]
            }
        );
    }

    #[test]
    fn rabbitmq_hash_matches_rabbitmqs_algorithm() {
        // RabbitMQ's documented example: password "test12", salt 0x908DC60A.
        assert_eq!(
            rabbitmq_hash("test12", [0x90, 0x8d, 0xc6, 0x0a]),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
    }

    #[test]
    fn every_secret_key_the_manifests_read_is_generated_and_values_are_fresh() {
        let passwords = Passwords::generate().unwrap();
        let secrets = objects(&passwords, "shop", "staging");
        assert!(!format!("{passwords:?}").contains(&passwords.jwt));
        let has = |name: &str, key: &str| {
            secrets
                .iter()
                .any(|s| s["metadata"]["name"] == name && !s["stringData"][key].is_null())
        };
        // Every secretKeyRef and Secret volume item in the rendered manifests exists.
        let mut referenced = 0;
        for object in rendered("staging") {
            let text = object.value.to_string();
            let value: Value = serde_json::from_str(&text).unwrap();
            walk(&value, &mut |v| {
                // An `optional` reference names a key the operator may add (the SMTP
                // relay's login); the deployer does not generate it.
                let optional = v["secretKeyRef"]["optional"] == true;
                if let (Some(name), Some(key), false) = (
                    v["secretKeyRef"]["name"].as_str(),
                    v["secretKeyRef"]["key"].as_str(),
                    optional,
                ) {
                    referenced += 1;
                    assert!(
                        has(name, key),
                        "{}: {name}/{key} is not generated",
                        object.key
                    );
                }
                if let Some(name) = v["secret"]["secretName"].as_str() {
                    for item in v["secret"]["items"].as_array().into_iter().flatten() {
                        referenced += 1;
                        let key = item["key"].as_str().unwrap();
                        assert!(
                            has(name, key),
                            "{}: {name}/{key} is not generated",
                            object.key
                        );
                    }
                }
                if let Some(name) = v["secretRef"]["name"].as_str() {
                    referenced += 1;
                    assert!(
                        NAMES.contains(&name),
                        "{}: {name} is not generated",
                        object.key
                    );
                }
            });
        }
        assert!(referenced >= 15, "only {referenced} references found");
        // One password, two Secrets: the app's URLs and the role Patroni creates agree.
        let value = |name: &str, key: &str| {
            secrets
                .iter()
                .find(|s| s["metadata"]["name"] == name)
                .unwrap()["stringData"][key]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let shop_db = value(POSTGRES, "SHOP_DB_PASSWORD");
        assert!(value(APP, "database-url").starts_with(&format!(
            "postgres://shop:{shop_db}@shop-postgres-primary.shop.svc:"
        )));
        assert!(value(APP, "database-read-url")
            .contains(&format!(":{shop_db}@shop-postgres-replica.shop.svc:")));
        assert!(value(APP, "redis-url").contains(&format!(":{}@", value(REDIS, "auth"))));
        let again = Passwords::generate().unwrap();
        let users: Value = serde_json::from_str(&value(RABBITMQ_USERS, "users.json")).unwrap();
        assert_eq!(
            users["users"][0]["password_hash"],
            rabbitmq_hash(&passwords.amqp, passwords.amqp_salt)
        );
        assert!(value(APP, "amqp-url").contains(&format!("shop:{}@", passwords.amqp)));
        // Patroni reads the whole Secret as PATRONI_* variables (envFrom): exactly the
        // database roles', the REST API's and the post-bootstrap script's values, each
        // password its own.
        let postgres = secrets
            .iter()
            .find(|s| s["metadata"]["name"] == POSTGRES)
            .unwrap();
        let mut keys: Vec<&str> = postgres["stringData"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "PATRONI_REPLICATION_PASSWORD",
                "PATRONI_RESTAPI_PASSWORD",
                "PATRONI_RESTAPI_USERNAME",
                "PATRONI_REWIND_PASSWORD",
                "PATRONI_SUPERUSER_PASSWORD",
                "SHOP_DB_PASSWORD"
            ]
        );
        assert_eq!(value(POSTGRES, "PATRONI_RESTAPI_USERNAME"), "patroni");
        let api = value(POSTGRES, "PATRONI_RESTAPI_PASSWORD");
        assert_eq!(api.len(), 48);
        for other in [
            &passwords.postgres,
            &passwords.replication,
            &passwords.rewind,
            &passwords.shop_db,
        ] {
            assert_ne!(&api, other);
        }
        assert_ne!(again.patroni_api, passwords.patroni_api);
        assert_ne!(again.jwt, passwords.jwt);
        assert_eq!(passwords.jwt.len(), 64);
    }

    #[test]
    fn the_redis_secret_is_one_hex_value_for_data_nodes_sentinels_and_the_app() {
        // Written unquoted into sentinel.conf (`requirepass`, `sentinel auth-pass`) and
        // into the app's URL: only hex is safe in both.
        let passwords = Passwords::generate().unwrap();
        assert!(passwords.redis.len() >= 32);
        assert!(passwords.redis.bytes().all(|b| b.is_ascii_hexdigit()));
        // The data nodes, the Sentinels, and the app and worker towards the Sentinels
        // all read the same key.
        let mut readers = BTreeSet::new();
        for object in rendered("staging") {
            let Some(spec) = object.value["spec"]["template"]["spec"].as_object() else {
                continue;
            };
            for container in spec["containers"].as_array().into_iter().flatten() {
                for env in container["env"].as_array().into_iter().flatten() {
                    let name = env["name"].as_str().unwrap_or("");
                    if name == "REDISCLI_AUTH" || name == "APP_REDIS__SENTINEL_PASSWORD" {
                        assert_eq!(
                            env["valueFrom"]["secretKeyRef"],
                            json!({"name": REDIS, "key": "auth"}),
                            "{}: {name}",
                            object.key
                        );
                        readers.insert(format!(
                            "{}/{name}",
                            object.value["metadata"]["name"].as_str().unwrap()
                        ));
                    }
                }
            }
        }
        let expected = [
            "shop-app/APP_REDIS__SENTINEL_PASSWORD",
            "shop-redis-primary/REDISCLI_AUTH",
            "shop-redis-replica/REDISCLI_AUTH",
            "shop-redis-sentinel/REDISCLI_AUTH",
            "shop-worker/APP_REDIS__SENTINEL_PASSWORD",
        ];
        assert_eq!(readers, expected.iter().map(|s| s.to_string()).collect());
    }

    fn walk(value: &Value, visit: &mut impl FnMut(&Value)) {
        visit(value);
        match value {
            Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
            Value::Object(map) => map.values().for_each(|v| walk(v, visit)),
            _ => {}
        }
    }
}
