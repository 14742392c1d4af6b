//! The I/O backend the driver runs on, one of two with the same interface:
//!
//! - `reactor/` (Linux, the default there): a reactor per worker thread, edge-triggered
//!   epoll, sockets registered once, and `splice(2)` for bulk tunnel data (`pipe.rs`);
//! - `portable/` (every other system, and Linux with the `portable` feature): async-io,
//!   smol's reactor, and no splice.
//!
//! The interface, which everything above (the driver, the accept loop, the upstream
//! pool) uses and nothing else:
//!
//! - [`block_on`]`(future) -> io::Result<Output>`: runs a worker's executor on this
//!   thread, with the reactor it needs; its wakers work from any thread (a shutdown
//!   signal, a freed connection slot).
//! - [`Io<TcpStream>`](Io): `stream` (register an accepted stream), `connect`, and one
//!   non-blocking call each: `read`, `read_spare` (into uninitialised memory),
//!   `write_vectored`, `splice_to` (at most so many bytes) / `splice_from` (a
//!   [`Pipe`]), `shutdown_write`, `set_nodelay`; each records what it learned about
//!   readiness, and the socket is not reachable otherwise. `poll_readable` / `poll_writable` (and `readable()`)
//!   complete when the next call may succeed; `may_be_readable` says
//!   whether a pooled socket needs a probe; `forget_wakers` before a socket changes task.
//! - [`Io<TcpListener>`](Io): `listener`, `accept` (a non-blocking stream and its
//!   peer's address), `local_addr`.
//! - [`Timer`]: `never`, `at`, `after`, `set_at`; a future that completes once at its
//!   deadline, then stays pending until set again.
//! - [`Pipe`] and [`pipe_supported`]: a pooled pipe for splicing (`take`, `give`,
//!   `len`); on the portable backend no `Pipe` can exist and `pipe_supported` is false,
//!   so the driver's code is the same for both.
//!
//! A registered socket is never duplicated (`try_clone`): see `reactor/mod.rs` for why.

#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub(crate) use crate::pipe;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub(crate) use crate::reactor::{block_on, Io, Timer};

#[cfg(any(not(target_os = "linux"), feature = "portable"))]
pub(crate) use crate::portable::pipe;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
pub(crate) use crate::portable::{block_on, Io, Timer};

pub(crate) use pipe::{supported as pipe_supported, Pipe};

/// Connections a worker's tables (its executor's tasks; on Linux, its reactor's sockets
/// and timers) have room for from the start (they grow past it). Room that no
/// connection used yet is address space only: the kernel backs a page once it is
/// written, so a worker's memory grows with its connections, by their entries, without
/// the copies and the freed old tables of a table doubling (at 1,000 idle tunnels those
/// were 25 bytes a tunnel).
pub(crate) const RESERVED_CONNECTIONS: usize = 1 << 14;

/// Whether this build can splice tunnel data (the Linux reactor).
#[cfg(test)]
pub(crate) const CAN_SPLICE: bool = cfg!(all(target_os = "linux", not(feature = "portable")));
