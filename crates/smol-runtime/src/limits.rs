//! Operating-system limits: the open-file (descriptor) limit and how many descriptors
//! a configuration may need (what accepting does when none are left is `shortage`).
//!
//! The library never changes the process's limits by itself: an embedding program may
//! have reasons for the limit it runs with. A program that owns its process (the
//! `switchyard` binary) calls [`raise_descriptor_limit`] before [`Server::bind`], which
//! compares the limit with the [`DescriptorBudget`] of its configuration and logs one
//! warning when it does not fit.
//!
//! [`Server::bind`]: crate::Server::bind

use std::fmt;
use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::ServerConfig;

/// Descriptors of the process itself: standard streams, a signal pipe, the files and
/// sockets a program embedding the proxy opens, and a connection each accept loop may
/// hold while it waits for a slot under `max_connections`.
const PROCESS_RESERVE: u64 = 16;
/// Descriptors of each worker besides connections and listeners: its reactor (an epoll
/// instance and an eventfd) and the spare splice pipes it keeps (two descriptors each).
#[cfg(all(target_os = "linux", not(feature = "portable")))]
const PER_WORKER: u64 = 2 + 2 * crate::pipe::MAX_FREE_PER_THREAD as u64;
/// On the portable backend the workers share async-io's one reactor (counted in
/// [`BACKEND_RESERVE`]) and keep no pipes.
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
const PER_WORKER: u64 = 0;
/// Descriptors of the backend shared by every worker: none for the per-worker reactors,
/// async-io's poller and its notifier on the portable backend.
#[cfg(all(target_os = "linux", not(feature = "portable")))]
const BACKEND_RESERVE: u64 = 0;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
const BACKEND_RESERVE: u64 = 2;
/// The admin listener's socket and the connections it serves at once.
const ADMIN: u64 = 1 + crate::admin::MAX_CONNECTIONS as u64;
/// Where the hard limit is unlimited, macOS refuses a soft limit above `OPEN_MAX`.
const OPEN_MAX: u64 = 10_240;

/// The process's open-file limit (`RLIMIT_NOFILE`). `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The limit in force: no descriptor numbered at or above it can be opened.
    pub soft: Option<u64>,
    /// How far the process may raise `soft` without privileges.
    pub hard: Option<u64>,
}

impl fmt::Display for DescriptorLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |limit: Option<u64>| limit.map_or("unlimited".to_string(), |n| n.to_string());
        write!(f, "{} (hard {})", show(self.soft), show(self.hard))
    }
}

/// The process's open-file limit now.
pub fn descriptor_limit() -> DescriptorLimit {
    let limit = getrlimit(Resource::Nofile);
    DescriptorLimit {
        soft: limit.current,
        hard: limit.maximum,
    }
}

/// Raises the process's soft open-file limit to its hard limit (what `ulimit -n` may
/// do without privileges) and returns the limit then in force. Affects the whole
/// process: call it at start-up, before [`Server::bind`](crate::Server::bind).
///
/// Fails only when the system refuses the new limit; the old one then stays.
///
/// # Examples
///
/// ```
/// let limit = switchyard_smol::raise_descriptor_limit()?;
/// println!("open-file limit: {limit}"); // e.g. `524288 (hard 524288)`
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn raise_descriptor_limit() -> io::Result<DescriptorLimit> {
    let limit = getrlimit(Resource::Nofile);
    let below = |target: Option<u64>| match (limit.current, target) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(soft), Some(target)) => soft < target,
    };
    if !below(limit.maximum) {
        return Ok(descriptor_limit());
    }
    let set = |soft: Option<u64>| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: soft,
                maximum: limit.maximum,
            },
        )
    };
    match set(limit.maximum) {
        Ok(()) => {}
        Err(_) if limit.maximum.is_none() && below(Some(OPEN_MAX)) => set(Some(OPEN_MAX))?,
        Err(error) => return Err(error.into()),
    }
    Ok(descriptor_limit())
}

/// The file descriptors a [`ServerConfig`] may need at once, by what needs them, so that
/// a limit too low for `max_connections` is said at start-up instead of found by
/// clients. [`Server::bind`](crate::Server::bind) logs the [`Shortfall`] as a warning.
///
/// # Examples
///
/// ```
/// use switchyard_smol::{DescriptorBudget, DescriptorLimit, ServerConfig};
///
/// let config = ServerConfig::simple(
///     "127.0.0.1:8080".parse().unwrap(),
///     "127.0.0.1:9000".parse().unwrap(),
/// );
/// let budget = DescriptorBudget::new(&config, 2); // two worker threads
/// assert_eq!(budget.connections, 20_000); // max_connections 10 000, two each
/// let limit = DescriptorLimit { soft: Some(1024), hard: Some(4096) };
/// let shortfall = budget.shortfall(limit).expect("10 000 connections need more than 1024");
/// assert!(shortfall.to_string().starts_with("max_connections 10000 needs up to"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// `max_connections` (0: no limit, so no budget to check).
    pub max_connections: usize,
    /// Two per client connection: the client's socket and its upstream's.
    pub connections: u64,
    /// The idle upstream connections the pools may keep: `max_idle_per_server` for each
    /// distinct upstream server, in each worker's pool.
    pub idle_upstream: u64,
    /// Listening sockets (one per address per worker), each worker's reactor and spare
    /// splice pipes, the admin listener's socket and its connections (when
    /// `admin_listen` is set), and a reserve for the process.
    pub fixed: u64,
}

impl DescriptorBudget {
    /// The budget of `config` served by `workers` threads (`config.workers`, with 0
    /// resolved to the number of cores).
    pub fn new(config: &ServerConfig, workers: usize) -> Self {
        let workers = workers.max(1) as u64;
        let mut servers: Vec<_> = config
            .upstreams
            .iter()
            .flat_map(|group| &group.servers)
            .collect();
        servers.sort_unstable();
        servers.dedup();
        let max_idle = config.pool.max_idle_per_server as u64;
        DescriptorBudget {
            max_connections: config.max_connections,
            connections: (config.max_connections as u64).saturating_mul(2),
            idle_upstream: max_idle
                .saturating_mul(servers.len() as u64)
                .saturating_mul(workers),
            fixed: (config.listen.len() as u64 + PER_WORKER)
                .saturating_mul(workers)
                .saturating_add(PROCESS_RESERVE + BACKEND_RESERVE)
                .saturating_add(if config.admin_listen.is_some() {
                    ADMIN
                } else {
                    0
                }),
        }
    }

    /// Every descriptor counted.
    pub fn total(&self) -> u64 {
        self.connections
            .saturating_add(self.idle_upstream)
            .saturating_add(self.fixed)
    }

    /// How many client connections fit in `descriptors` beside the pools and the fixed
    /// part.
    pub fn connections_within(&self, descriptors: u64) -> u64 {
        descriptors.saturating_sub(self.idle_upstream.saturating_add(self.fixed)) / 2
    }

    /// What is missing when the budget does not fit in `limit`'s soft limit; `None`
    /// when it fits, the limit is unlimited, or `max_connections` is 0.
    pub fn shortfall(&self, limit: DescriptorLimit) -> Option<Shortfall> {
        let soft = limit.soft?;
        (self.max_connections > 0 && self.total() > soft).then_some(Shortfall {
            budget: *self,
            limit,
        })
    }
}

/// A [`DescriptorBudget`] that does not fit in the [`DescriptorLimit`]. Its `Display`
/// is the one-line warning, with the numbers and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// What the configuration needs.
    pub budget: DescriptorBudget,
    /// The limit it does not fit in.
    pub limit: DescriptorLimit,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = &self.budget;
        write!(
            f,
            "max_connections {} needs up to {} file descriptors (2 per connection, {} for idle \
             upstream connections, {} for listeners, workers and the process), but the limit \
             is {}, enough for about {} connections; raise it (ulimit -n, or LimitNOFILE= for \
             a systemd service) or lower max_connections",
            budget.max_connections,
            budget.total(),
            budget.idle_upstream,
            budget.fixed,
            self.limit,
            budget.connections_within(self.limit.soft.unwrap_or(u64::MAX)),
        )
    }
}

/// Logs the one start-up warning when `budget` does not fit in the limit in force.
pub(crate) fn warn_if_short(budget: &DescriptorBudget) {
    if let Some(shortfall) = budget.shortfall(descriptor_limit()) {
        tracing::warn!("{shortfall}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UpstreamGroup;

    fn config() -> ServerConfig {
        ServerConfig::simple(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        )
    }

    fn limit(soft: u64, hard: u64) -> DescriptorLimit {
        DescriptorLimit {
            soft: Some(soft),
            hard: Some(hard),
        }
    }

    #[test]
    fn a_connection_needs_two_descriptors_beside_the_pools_listeners_and_workers() {
        let budget = DescriptorBudget::new(&config(), 2);
        assert_eq!(budget.connections, 20_000);
        assert_eq!(
            budget.idle_upstream,
            128 * 2,
            "128 per server in each of 2 pools"
        );
        assert_eq!(
            budget.fixed,
            2 * (1 + PER_WORKER) + PROCESS_RESERVE + BACKEND_RESERVE
        );
        assert_eq!(budget.fixed, FIXED_TWO_WORKERS);
        assert_eq!(budget.total(), 20_256 + FIXED_TWO_WORKERS);
    }

    #[test]
    fn pools_count_each_distinct_server_once_per_worker() {
        let mut config = config();
        config.listen.push("127.0.0.1:8081".parse().unwrap());
        config.upstreams.push(UpstreamGroup {
            name: "other".into(),
            // 9000 is in the default group too: one pool entry for both.
            servers: vec![
                "127.0.0.1:9000".parse().unwrap(),
                "127.0.0.1:9001".parse().unwrap(),
            ],
            ..Default::default()
        });
        config.pool.max_idle_per_server = 10;
        let budget = DescriptorBudget::new(&config, 3);
        assert_eq!(budget.idle_upstream, 10 * 2 * 3);
        assert_eq!(
            budget.fixed,
            3 * (2 + PER_WORKER) + PROCESS_RESERVE + BACKEND_RESERVE
        );

        config.pool.max_idle_per_server = 0;
        assert_eq!(DescriptorBudget::new(&config, 3).idle_upstream, 0);
    }

    #[test]
    fn the_admin_listener_counts_its_socket_and_its_connections() {
        let mut config = config();
        let without = DescriptorBudget::new(&config, 2);
        config.admin_listen = Some("127.0.0.1:9100".parse().unwrap());
        let with = DescriptorBudget::new(&config, 2);
        assert_eq!(
            with.fixed,
            without.fixed + 17,
            "a socket and 16 connections"
        );
        assert_eq!(with.connections, without.connections);
        assert_eq!(with.total(), without.total() + 17);
    }

    #[test]
    fn workers_zero_counts_as_one() {
        assert_eq!(
            DescriptorBudget::new(&config(), 0),
            DescriptorBudget::new(&config(), 1)
        );
    }

    #[test]
    fn a_budget_fits_up_to_the_soft_limit_exactly() {
        let budget = DescriptorBudget::new(&config(), 2);
        let total = budget.total();
        assert_eq!(budget.shortfall(limit(total, total)), None);
        assert_eq!(budget.shortfall(limit(total + 1, total + 1)), None);
        let short = budget.shortfall(limit(total - 1, total + 100));
        assert_eq!(
            short,
            Some(Shortfall {
                budget,
                limit: limit(total - 1, total + 100)
            })
        );
    }

    #[test]
    fn no_shortfall_without_a_soft_limit_or_without_max_connections() {
        let budget = DescriptorBudget::new(&config(), 2);
        let unlimited = DescriptorLimit {
            soft: None,
            hard: None,
        };
        assert_eq!(budget.shortfall(unlimited), None);
        let mut config = config();
        config.max_connections = 0;
        assert_eq!(
            DescriptorBudget::new(&config, 2).shortfall(limit(8, 8)),
            None
        );
    }

    /// Listeners, workers and the process with one listener and 2 workers: each
    /// per-worker reactor keeps an epoll, an eventfd and 32 spare pipes; the portable
    /// backend shares one poller and keeps no pipes.
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    const FIXED_TWO_WORKERS: u64 = 86;
    #[cfg(any(not(target_os = "linux"), feature = "portable"))]
    const FIXED_TWO_WORKERS: u64 = 20;

    #[test]
    fn connections_within_a_limit_leave_room_for_the_pools_and_the_fixed_part() {
        let budget = DescriptorBudget::new(&config(), 2);
        assert_eq!(
            budget.connections_within(1024),
            (1024 - 256 - FIXED_TWO_WORKERS) / 2
        );
        assert_eq!(
            budget.connections_within(256 + FIXED_TWO_WORKERS - 1),
            0,
            "the pools and the fixed part alone do not fit"
        );
        assert_eq!(
            budget.connections_within(budget.total()),
            budget.max_connections as u64
        );
    }

    #[test]
    fn the_warning_names_the_need_its_parts_the_limit_and_the_remedies() {
        let budget = DescriptorBudget::new(&config(), 2);
        let warning = budget.shortfall(limit(1024, 4096)).unwrap().to_string();
        let fixed = FIXED_TWO_WORKERS;
        let (total, fit) = (20_256 + fixed, (1024 - 256 - fixed) / 2);
        assert_eq!(
            warning,
            format!(
                "max_connections 10000 needs up to {total} file descriptors (2 per connection, \
                 256 for idle upstream connections, {fixed} for listeners, workers and the \
                 process), but the limit is 1024 (hard 4096), enough for about {fit} \
                 connections; raise it (ulimit -n, or LimitNOFILE= for a systemd service) or \
                 lower max_connections"
            )
        );
        assert!(!warning.contains('\n'), "one line");
    }

    #[test]
    fn raising_sets_the_soft_limit_to_the_hard_limit() {
        let before = getrlimit(Resource::Nofile);
        let Some(hard) = before.maximum else {
            return; // unlimited: nothing to compare against
        };
        // One below the hard limit: far above what this test binary opens.
        let lowered = Rlimit {
            current: Some(hard - 1),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).unwrap();
        assert_eq!(descriptor_limit().soft, Some(hard - 1));
        let raised = raise_descriptor_limit().unwrap();
        assert_eq!(raised, limit(hard, hard));
        assert_eq!(descriptor_limit(), raised);
        assert_eq!(
            raise_descriptor_limit().unwrap(),
            raised,
            "raising again is a no-op"
        );
    }
}
