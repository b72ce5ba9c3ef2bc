//! Loopback ports for the servers a test starts. One file for both test crates: the app's
//! API tests include it as a module, the CLI's tests through `#[path]` from their common
//! module.

use std::net::TcpListener;

/// A free loopback port (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `count` consecutive free loopback ports for a server a test starts.
///
/// They come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), never
/// from `bind(0)`: a port inside that range can be free when checked and then be taken by any
/// outgoing connection (Patroni to etcd, a client to the broker) before a slow server such as
/// RabbitMQ binds it. A process-wide cursor never hands out the same port twice.
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low
        .saturating_sub(LOWEST + u32::from(count))
        .max(1);
    // Each test process starts elsewhere: the previous one's servers may still be stopping.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..2_000 {
        let offset = CURSOR.fetch_add(u32::from(count), Ordering::Relaxed);
        let base = (LOWEST + (start + offset) % span) as u16;
        if (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free loopback ports below {ephemeral_low}");
}
