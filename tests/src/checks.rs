//! Assertions shared by the smuggling tests: what a client got back, and proof that the
//! origin received nothing.

use std::net::SocketAddr;

use crate::{Conn, Origin};

/// Sends `raw` on a fresh connection to `proxy` and returns the status of the first final
/// response (0 if the proxy closed without one) and, when that response said
/// `Connection: close`, every byte that followed it until the proxy closed.
pub fn send_raw(proxy: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut client = Conn::connect(proxy);
    let _ = client.try_write_all(raw);
    let Ok(response) = client.read_final_response("GET") else {
        return (0, Vec::new());
    };
    let rest = if response.head.has_token("connection", "close") {
        client.read_to_end().unwrap_or_default()
    } else {
        Vec::new()
    };
    (response.head.status(), rest)
}

/// Proves `origin` received nothing from earlier connections to `proxy`: a probe request
/// (`GET /probe`) sent now must be the first and only thing the origin ever saw. Had the
/// proxy dialed the origin for an earlier client, that connection would have been
/// accepted first. The origin must answer the probe with `200`.
pub fn origin_saw_only_a_probe(origin: &Origin, proxy: SocketAddr) -> Result<(), String> {
    let mut probe = Conn::connect(proxy);
    probe.write_all(b"GET /probe HTTP/1.1\r\nHost: example\r\n\r\n");
    let response = probe
        .read_final_response("GET")
        .map_err(|e| format!("probe: {e}"))?;
    if response.head.status() != 200 {
        return Err(format!("probe answered {:?}", response.head.start_line));
    }
    let targets: Vec<_> = origin
        .requests()
        .iter()
        .map(|r| r.head.target().to_owned())
        .collect();
    if targets != ["/probe"] {
        return Err(format!("the origin received requests for {targets:?}"));
    }
    let first = String::from_utf8_lossy(&origin.received()[0]).into_owned();
    if !first.starts_with("GET /probe ") {
        return Err(format!("the first origin connection received {first:?}"));
    }
    Ok(())
}
