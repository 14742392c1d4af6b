//! `switchyard check`'s account of the effective configuration.

use std::fmt;

use switchyard_smol::UpstreamRoots;

use super::Settings;
use crate::duration::{format_duration, format_duration_or_off};

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The effective configuration, one setting per line, as `switchyard check` prints it.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.core.timeouts;
        let l = &self.core.limits;
        let fw = &self.core.forwarding;
        writeln!(f, "listen             {}", join(&self.listen))?;
        for tls in &self.tls {
            let files: Vec<String> = tls
                .certificates
                .files()
                .iter()
                .map(|(cert, key)| format!("{} (key {})", cert.display(), key.display()))
                .collect();
            writeln!(
                f,
                "listen tls         {}   certificates {}{}",
                join(&tls.listen),
                files.join(", "),
                if files.len() > 1 {
                    "   by SNI, the first by default"
                } else {
                    ""
                }
            )?;
        }
        let proxy = &self.proxy_protocol;
        if !proxy.accept_on.is_empty() {
            writeln!(
                f,
                "proxy_protocol     required on {}",
                join(&proxy.accept_on)
            )?;
        }
        match self.admin_listen {
            Some(admin) => writeln!(
                f,
                "admin              {admin}   /metrics /status /status.json /healthz /readyz"
            )?,
            None => writeln!(f, "admin              off")?,
        }
        if let Some(path) = &self.upgrade_socket {
            writeln!(f, "upgrade_socket     {}", path.display())?;
        }
        writeln!(
            f,
            "workers            {}   max_connections {}   shutdown_grace {}   drain_timeout {}",
            self.workers,
            self.max_connections,
            format_duration(self.shutdown_grace),
            format_duration_or_off(self.drain_timeout)
        )?;
        writeln!(
            f,
            "client timeouts    header {}   idle {}",
            format_duration(t.header),
            format_duration(t.idle)
        )?;
        writeln!(
            f,
            "limits             max_request_line {}   max_header_bytes {}   max_headers {}",
            l.max_request_line, l.max_header_bytes, l.max_headers
        )?;
        writeln!(
            f,
            "forwarding         x-forwarded-for {}   x-forwarded-proto {}   forwarded {}   via {}",
            on_off(fw.x_forwarded_for),
            on_off(fw.x_forwarded_proto),
            on_off(fw.forwarded),
            fw.via.as_deref().unwrap_or("off")
        )?;
        writeln!(
            f,
            "pool               {} idle per server per worker, closed after {}",
            self.pool_max_idle_per_server,
            format_duration(self.pool_idle_timeout)
        )?;
        for (index, group) in self.upstreams.iter().enumerate() {
            let used = self.route_upstream.contains(&index);
            let servers: Vec<String> = (0..group.servers.len())
                .map(|i| match group.weight(i) {
                    1 => group.servers[i].to_string(),
                    weight => format!("{} weight={weight}", group.servers[i]),
                })
                .collect();
            writeln!(
                f,
                "upstream {:<9} {}   balance {}{}{}",
                group.name,
                servers.join(" "),
                group.balance,
                if proxy.send_to.contains(&group.name) {
                    "   send_proxy_protocol v2, not pooled"
                } else {
                    ""
                },
                if used { "" } else { "   [unused]" }
            )?;
            for name in &group.names {
                writeln!(
                    f,
                    "    name           {} -> {}   resolved again every {}",
                    name.name,
                    join(&name.addrs),
                    format_duration(group.resolve_interval)
                )?;
            }
            if let Some(check) = &group.health_check {
                let status = if check.status.is_empty() {
                    "2xx/3xx".to_string()
                } else {
                    join(&check.status)
                };
                writeln!(
                    f,
                    "    health_check   GET {} every {}, timeout {}   down after {} fails, up after {} passes   status {status}   host {}",
                    check.path,
                    format_duration(check.interval),
                    format_duration(check.timeout),
                    check.fails,
                    check.passes,
                    check.host.as_deref().unwrap_or("(the server's address)")
                )?;
            }
            if !group.source.is_empty() {
                writeln!(f, "    source         {}   (in turn)", join(&group.source))?;
            }
            if let Some(tls) = &group.tls {
                let roots = match tls.roots() {
                    UpstreamRoots::System => "the system's roots".to_string(),
                    UpstreamRoots::CaFile(file) => format!("ca {}", file.display()),
                    UpstreamRoots::InsecureSkipVerify => {
                        "insecure_skip_verify: NOT VERIFIED".to_string()
                    }
                };
                let name = tls
                    .server_name()
                    .unwrap_or("(each server's host name or IP address)");
                writeln!(
                    f,
                    "    tls            {roots}   server_name {name}   alpn http/1.1"
                )?;
            }
        }
        for (route, &upstream) in self.core.routes.iter().zip(&self.route_upstream) {
            let rt = &route.timeouts;
            writeln!(
                f,
                "route {} -> {}",
                route.prefix, self.upstreams[upstream].name
            )?;
            let upgrades = if route.allow_upgrade.is_empty() {
                "none".to_string()
            } else {
                route.allow_upgrade.join(", ")
            };
            writeln!(f, "    allow_upgrade  {upgrades}")?;
            writeln!(
                f,
                "    timeouts       connect {}   read {}   send {}   tunnel_idle {}",
                format_duration(rt.connect),
                format_duration(rt.read),
                format_duration(rt.send),
                format_duration_or_off(rt.tunnel_idle)
            )?;
            let ws = &route.websocket;
            let pings = match ws.ping_interval {
                Some(every) => format!(
                    "ping every {}, dead after {}",
                    format_duration(every),
                    format_duration(ws.ping_timeout)
                ),
                None => "ping off".to_string(),
            };
            writeln!(
                f,
                "    websocket      validate {}   {pings}",
                on_off(ws.validate)
            )?;
            writeln!(
                f,
                "    max_body_bytes {}",
                route
                    .max_body_bytes
                    .map_or("unlimited".to_string(), |b| b.to_string())
            )?;
        }
        Ok(())
    }
}
