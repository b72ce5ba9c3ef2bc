//! One deploy at a time per environment: a `coordination.k8s.io/v1` Lease in the
//! namespace (`shopctl-deploy`), taken before anything is applied and deleted after. Two
//! CI pipelines deploying at once would otherwise race for the revision number and apply
//! over each other. A Lease whose holder died expires, so a crash never locks for good.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The Lease's name.
pub const NAME: &str = "shopctl-deploy";

/// Who holds the lock: user, host and process, for the message another deploy shows.
pub fn identity() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// What to do about the Lease found (None: there is none).
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nobody holds it: create it.
    Create,
    /// Its holder's time ran out: replace it, on the condition that it is still the
    /// version read (`resourceVersion`), so two deploys cannot both take it over.
    TakeOver {
        resource_version: String,
        holder: String,
    },
    /// Someone holds it.
    Held {
        holder: String,
        since: String,
        expires_in: Duration,
    },
}

pub fn decide(lease: Option<&Value>, now: SystemTime) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"]
        .as_str()
        .unwrap_or("someone")
        .to_owned();
    let duration = Duration::from_secs(spec["leaseDurationSeconds"].as_u64().unwrap_or(0));
    let renewed = spec["renewTime"]
        .as_str()
        .or_else(|| spec["acquireTime"].as_str())
        .and_then(parse_time);
    let expires = renewed.map(|t| t + duration);
    match expires {
        Some(expires) if expires > now => Decision::Held {
            holder,
            since: spec["acquireTime"].as_str().unwrap_or("?").to_owned(),
            expires_in: expires.duration_since(now).unwrap_or_default(),
        },
        _ => Decision::TakeOver {
            resource_version: lease["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            holder,
        },
    }
}

/// The Lease a deploy takes for `hold` (its timeout and a margin).
pub fn lease(
    namespace: &str,
    env: &str,
    holder: &str,
    now: SystemTime,
    hold: Duration,
    resource_version: Option<&str>,
) -> Value {
    let at = micro_time(now);
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "shopctl",
                "app.kubernetes.io/part-of": "shop",
                "shop.example.com/deploy-lock": env,
            },
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": hold.as_secs(),
            "acquireTime": at,
            "renewTime": at,
        },
    });
    if let Some(version) = resource_version {
        lease["metadata"]["resourceVersion"] = json!(version);
    }
    lease
}

/// Kubernetes' MicroTime: RFC 3339 in UTC with exactly six fractional digits.
fn micro_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = time::OffsetDateTime::from_unix_timestamp(since.as_secs() as i64)
        .expect("a time after 1970");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        since.subsec_micros()
    )
}

/// Reads the RFC 3339 times the API server writes (`2026-11-29T19:00:00.123456Z`).
fn parse_time(text: &str) -> Option<SystemTime> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = parsed.unix_timestamp_nanos();
    (nanos >= 0).then(|| UNIX_EPOCH + Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_lease_round_trips_its_times_and_holds_for_its_duration() {
        let now = at(1_800_000_000) + Duration::from_micros(123_456);
        let mut lease = lease(
            "shop",
            "staging",
            "ci@runner-1 pid 7",
            now,
            Duration::from_secs(720),
            None,
        );
        assert_eq!(lease["spec"]["acquireTime"], "2027-01-15T08:00:00.123456Z");
        assert!(lease["metadata"].get("resourceVersion").is_none());
        lease["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(decide(None, now), Decision::Create);
        assert_eq!(
            decide(Some(&lease), now + Duration::from_secs(60)),
            Decision::Held {
                holder: "ci@runner-1 pid 7".into(),
                since: "2027-01-15T08:00:00.123456Z".into(),
                expires_in: Duration::from_secs(660),
            }
        );
        assert_eq!(
            decide(Some(&lease), now + Duration::from_secs(721)),
            Decision::TakeOver {
                resource_version: "42".into(),
                holder: "ci@runner-1 pid 7".into()
            }
        );
        // A renewal counts from the renewal.
        lease["spec"]["renewTime"] = json!("2027-01-15T08:10:00.000000Z");
        assert!(matches!(
            decide(Some(&lease), now + Duration::from_secs(721)),
            Decision::Held { .. }
        ));
        // A Lease without times (someone else's tool) can be taken over.
        let bare = json!({"metadata": {"resourceVersion": "3"}, "spec": {"holderIdentity": "x"}});
        assert!(matches!(
            decide(Some(&bare), now),
            Decision::TakeOver { .. }
        ));
        // Taking over carries the version read, so a second taker's replace conflicts.
        let over = super::lease(
            "shop",
            "staging",
            "me",
            now,
            Duration::from_secs(1),
            Some("42"),
        );
        assert_eq!(over["metadata"]["resourceVersion"], "42");
        assert!(identity().contains(" pid "));
    }
}
