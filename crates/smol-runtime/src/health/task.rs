//! The check tasks: one per server of each group with a health check, on worker 0's
//! executor (checks are a few requests per interval: one thread is plenty, and none of
//! them blocks it). A reload replaces them all with the new generation's; the state they
//! write is the servers', which the reload carried over, so nothing is lost but the
//! wait for the next check (the new tasks check at once).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::executor::LocalExecutor;
use futures_lite::future;

use super::{probe, Change, Targets};
use crate::backend::Timer;
use crate::signal::Signal;
use crate::upstream::Group;

/// The running check tasks of the newest generation.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// Fired to stop the tasks started last.
    stop: Option<Arc<Signal>>,
}

impl Checks {
    /// Stops the tasks running and starts one per server of each of `groups` that has a
    /// health check, on `executor`, until the next call or until `server_stop` fires.
    pub(crate) fn start(
        &mut self,
        groups: &[Group],
        executor: &LocalExecutor,
        server_stop: &Arc<Signal>,
    ) {
        if let Some(old) = self.stop.take() {
            old.fire();
        }
        let stop = Arc::new(Signal::default());
        for targets in groups.iter().filter_map(Group::health_targets) {
            let targets = Rc::new(targets);
            for index in 0..targets.servers.len() {
                let stops = [stop.clone(), server_stop.clone()];
                executor
                    .spawn(check_server(targets.clone(), index, stops))
                    .detach();
            }
        }
        self.stop = Some(stop);
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.fire();
        }
    }
}

/// Checks server `index` of `targets` every interval until either of `stops` fires.
async fn check_server(targets: Rc<Targets>, index: usize, stops: [Arc<Signal>; 2]) {
    let (server, health) = &targets.servers[index];
    let check = &targets.check;
    let tls = targets.tls.as_ref().and_then(|(tls, names)| {
        let name = names.iter().find(|(addr, _)| addr == server)?;
        Some((tls, name.1.clone()))
    });
    let local_header = targets
        .proxy_header
        .then(|| switchyard_core::proxy_protocol::encode_v2(None));
    loop {
        let source = targets.sources.next_for(*server);
        let probe = async {
            Some(match source {
                Ok(source) => {
                    let dial = probe::Dial {
                        source,
                        proxy_header: local_header.as_deref(),
                        tls: tls.clone(),
                    };
                    probe::check(check, *server, dial).await
                }
                Err(error) => Err(error.to_string()),
            })
        };
        let Some(result) = future::or(probe, stopped(&stops)).await else {
            return;
        };
        if let Err(reason) = &result {
            tracing::debug!(upstream = %targets.group, %server, %reason, "health check failed");
        }
        match health.record(result.is_ok(), check) {
            Some(Change::WentDown) => tracing::warn!(
                upstream = %targets.group,
                %server,
                reason = result.err().unwrap_or_default(),
                "upstream server down: failed its health check {} in a row; no new connections until it passes {} in a row",
                times(check.fails),
                times(check.passes),
            ),
            Some(Change::CameUp) => tracing::info!(
                upstream = %targets.group,
                %server,
                "upstream server up: passed its health check {} in a row",
                times(check.passes),
            ),
            None => {}
        }
        let every_down = targets.servers.iter().all(|(_, health)| health.is_down());
        if targets.all_down.swap(every_down, Ordering::Relaxed) != every_down {
            if every_down {
                tracing::error!(
                    upstream = %targets.group,
                    "every server of the upstream group is down by its health check: its requests get 502 at once until one passes again"
                );
            } else {
                tracing::info!(upstream = %targets.group, "the upstream group has a server up again");
            }
        }
        let wait = async {
            Timer::after(check.interval).await;
            Some(())
        };
        if future::or(wait, stopped(&stops)).await.is_none() {
            return;
        }
    }
}

/// Completes with `None` once either of `stops` fired (the other arm of a race yields
/// `Some`).
async fn stopped<T>(stops: &[Arc<Signal>; 2]) -> Option<T> {
    future::or(stops[0].wait(), stops[1].wait()).await;
    None
}

/// `1 time`, `3 times`: a threshold as the log says it (0 counts as 1).
fn times(threshold: u32) -> String {
    match threshold.max(1) {
        1 => "1 time".to_string(),
        n => format!("{n} times"),
    }
}
