//! Readiness probes: each asks a component the question that proves it can do its job
//! (etcd `/health`, Patroni `/leader` and `/replica`, a query through HAProxy, Redis `PING`,
//! the AMQP handshake, the SMTP greeting, the app's `/readyz` through nginx). No sleeps.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::http;

const TIMEOUT: Duration = Duration::from_millis(800);

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

pub fn tcp(port: u16) -> bool {
    connect(port).is_ok()
}

pub fn http_ok(port: u16, path: &str) -> bool {
    http::get(port, path, TIMEOUT).is_ok_and(|r| r.status == 200)
}

/// etcd answers `/health` with `{"health":"true"}` only when the cluster has a leader.
pub fn etcd(port: u16) -> bool {
    http::get(port, "/health", TIMEOUT)
        .is_ok_and(|r| r.status == 200 && r.body.contains("\"true\""))
}

/// A query through a PostgreSQL port, as `user` (password from the environment only).
pub fn query(psql: &Path, port: u16, user: &str, password: &str, db: &str) -> bool {
    Command::new(psql)
        .args(["-X", "-q", "-w", "-At", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname={db} connect_timeout=2"
        ))
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn redis(port: u16) -> bool {
    let Ok(mut s) = connect(port) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The AMQP 0-9-1 protocol header, answered by a `Connection.Start` method frame (type 1).
pub fn amqp(port: u16) -> bool {
    let Ok(mut s) = connect(port) else {
        return false;
    };
    let mut frame_type = [0u8; 1];
    s.write_all(b"AMQP\x00\x00\x09\x01").is_ok()
        && s.read_exact(&mut frame_type).is_ok()
        && frame_type[0] == 1
}

pub fn smtp(port: u16) -> bool {
    let Ok(mut s) = connect(port) else {
        return false;
    };
    let mut greeting = [0u8; 3];
    let ok = s.read_exact(&mut greeting).is_ok() && &greeting == b"220";
    let _ = s.write_all(b"QUIT\r\n");
    ok
}
