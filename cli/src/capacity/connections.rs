//! The connection budget of PostgreSQL: every pool at its HPA maximum, plus what Patroni
//! and the tools hold, must fit `max_connections`, or a scale-out turns into "too many
//! clients" errors exactly when the shop is busiest.
//!
//! Every member gets the same `max_connections` (Patroni requires replicas to have at
//! least the primary's), and each pool connects to one server at a time (the app's write
//! pool to the primary, its read pool to one replica), so one server's bound is the sum.

use serde::Serialize;

use crate::config::Services;

/// One holder of connections besides the app's and worker's pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reserve {
    pub holder: &'static str,
    pub connections: u32,
    pub why: &'static str,
}

/// What is held back from the pools. Replication itself takes none: since PostgreSQL 12
/// WAL senders have their own slots (max_wal_senders), not max_connections'.
pub const RESERVE: &[Reserve] = &[
    Reserve {
        holder: "superuser_reserved_connections",
        connections: 3,
        why: "PostgreSQL's default, not changed by the rendered configuration: slots only superusers may take",
    },
    Reserve {
        holder: "Patroni",
        connections: 3,
        why: "its heartbeat connection, the REST API's and one for callbacks and pg_rewind's source queries",
    },
    Reserve {
        holder: "migrate Job",
        connections: 2,
        why: "migrations run over one connection of a lazy pool; one more while the previous Job's pod ends",
    },
    Reserve {
        holder: "base backup",
        connections: 1,
        why: "wal-g backup-push of the CronJob",
    },
    Reserve {
        holder: "failover-test",
        connections: 2,
        why: "its ledger writer and its checks",
    },
    Reserve {
        holder: "psql by hand",
        connections: 5,
        why: "operators during an incident",
    },
];

/// The sum of the reserve.
pub fn reserved() -> u32 {
    RESERVE.iter().map(|r| r.connections).sum()
}

/// One environment's budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub app_pool: u32,
    pub app_max_replicas: u32,
    pub worker_pool: u32,
    pub worker_max_replicas: u32,
    pub reserve: u32,
    pub max_connections: u32,
}

impl Budget {
    pub fn of(services: &Services) -> Budget {
        Budget {
            app_pool: services.app.db_pool,
            app_max_replicas: services.app_max_replicas(),
            worker_pool: services.worker.db_pool,
            worker_max_replicas: services.worker_max_replicas(),
            reserve: reserved(),
            max_connections: services.patroni.max_connections,
        }
    }

    /// Connections that may be open at once.
    pub fn needed(&self) -> u32 {
        self.app_pool * self.app_max_replicas
            + self.worker_pool * self.worker_max_replicas
            + self.reserve
    }

    pub fn fits(&self) -> bool {
        self.needed() <= self.max_connections
    }

    /// `app 10 x 6 + worker 10 x 4 + reserve 16 = 116`.
    pub fn sum(&self) -> String {
        format!(
            "app {} x {} (services.app.db_pool x HPA maximum) + worker {} x {} (services.worker.db_pool x HPA maximum) + reserve {} = {}",
            self.app_pool,
            self.app_max_replicas,
            self.worker_pool,
            self.worker_max_replicas,
            self.reserve,
            self.needed()
        )
    }

    /// The largest pool each could have, split as now, within max_connections.
    pub fn pools_that_fit(&self) -> (u32, u32) {
        let room = self.max_connections.saturating_sub(self.reserve);
        let pods = self.app_max_replicas + self.worker_max_replicas;
        let each = room / pods.max(1);
        (each, each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(app_pool: u32, app: u32, worker_pool: u32, worker: u32, max: u32) -> Budget {
        Budget {
            app_pool,
            app_max_replicas: app * 3,
            worker_pool,
            worker_max_replicas: worker * 4,
            reserve: reserved(),
            max_connections: max,
        }
    }

    #[test]
    fn the_reserve_is_explicit() {
        assert_eq!(reserved(), 16);
        assert!(RESERVE
            .iter()
            .all(|r| r.connections > 0 && !r.why.is_empty()));
    }

    #[test]
    fn pools_at_hpa_maxima_plus_the_reserve_must_fit() {
        // The case: production's 4 app and 2 worker replicas with the app's own
        // default pool of 20 need 20 x 12 + 20 x 8 + 16 = 416 > 200.
        let before = budget(20, 4, 20, 2, 200);
        assert_eq!(before.needed(), 416);
        assert!(!before.fits());
        // Exactly at the limit fits; one over does not.
        let exact = budget(10, 2, 10, 1, 60 + 40 + 16);
        assert!(exact.fits());
        let over = Budget {
            max_connections: exact.needed() - 1,
            ..exact.clone()
        };
        assert!(!over.fits());
        assert!(over.sum().ends_with("reserve 16 = 116"), "{}", over.sum());
    }

    #[test]
    fn suggests_pools_that_fit() {
        let b = budget(20, 4, 20, 2, 200);
        let (app, worker) = b.pools_that_fit();
        let fixed = Budget {
            app_pool: app,
            worker_pool: worker,
            ..b
        };
        assert!(fixed.fits(), "{fixed:?}");
    }
}
