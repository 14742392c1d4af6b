//! Zero-downtime upgrades: handing the listening sockets from a running process to its
//! successor over a Unix socket (`SCM_RIGHTS`), as HAProxy's `-x`, Envoy's hot restart
//! and Pingora do.
//!
//! A server with [`ServerConfig::upgrade_socket`](crate::ServerConfig::upgrade_socket)
//! serves that path from a thread of its own. A server started with the same path
//! connects to it first, before binding anything, and receives every listening socket
//! of the running one: the very same sockets, so their accept queues are shared and a
//! connection queued when the old process stops accepting is accepted by the new one
//! instead of being reset (closing a `SO_REUSEPORT` listener resets its queue). Once the
//! new process serves, it takes the path over and says so; the old process then drains
//! exactly as on SIGTERM.
//!
//! The conversation, in records of 8 bytes (`"SY"`, a kind, the version 1, a big-endian
//! `u32`):
//!
//! | from | kind | count | with |
//! |---|---|---|---|
//! | new | `H` hello | its process id | |
//! | old | `L` listeners | sockets attached | up to 32 descriptors |
//! | old | `E` end | sockets sent in all | |
//! | new | `R` ready: it accepts, stop | 0 | |
//!
//! A new process that fails or goes away before `R` changes nothing in the old one (its
//! copies of the sockets close with it).

use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::signal::Signal;

const VERSION: u8 = 1;
const RECORD: usize = 8;
/// Descriptors per message: well under the kernel's limit (253 on Linux).
const BATCH: usize = 32;
/// How long either side waits for the other's next record. The old process waits this
/// long for `R` too: the new one binds what it must and starts its workers first.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello = b'H' as isize,
    Listeners = b'L' as isize,
    End = b'E' as isize,
    Ready = b'R' as isize,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        [Kind::Hello, Kind::Listeners, Kind::End, Kind::Ready]
            .into_iter()
            .find(|kind| *kind as u8 == byte)
    }
}

/// The errors name no path: [`UpgradeSocket::bind`] adds it, the old process's log
/// says where it is.
fn protocol_error(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A send or receive timeout (`SO_SNDTIMEO`, `SO_RCVTIMEO`) expired.
fn not_answering() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the other process did not answer within {PEER_TIMEOUT:?}"),
    )
}

/// Sends one record, with `fds` attached.
fn send(
    stream: &UnixStream,
    kind: Kind,
    count: u32,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    let mut record = [b'S', b'Y', kind as u8, VERSION, 0, 0, 0, 0];
    record[4..].copy_from_slice(&count.to_be_bytes());
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(protocol_error("too many descriptors for one message"));
    }
    let mut sent = 0;
    while sent < RECORD {
        // The descriptors go with the first bytes; a short write sends the rest bare.
        let n = match rustix::net::sendmsg(
            stream,
            &[IoSlice::new(&record[sent..])],
            &mut control,
            SendFlags::empty(),
        ) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(not_answering()),
            Err(error) => return Err(error.into()),
        };
        control.clear();
        sent += n;
    }
    Ok(())
}

/// Receives one record and the descriptors that came with it.
fn receive(stream: &UnixStream) -> io::Result<(Kind, u32, Vec<OwnedFd>)> {
    let mut record = [0u8; RECORD];
    let mut fds = Vec::new();
    let mut got = 0;
    #[cfg(target_os = "linux")]
    let flags = RecvFlags::CMSG_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = RecvFlags::empty();
    while got < RECORD {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut record[got..])];
        let received = match rustix::net::recvmsg(stream, &mut iov, &mut control, flags) {
            Ok(received) => received,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(not_answering()),
            Err(error) => return Err(error.into()),
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(protocol_error("more descriptors than announced"));
        }
        if received.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other process hung up",
            ));
        }
        got += received.bytes;
    }
    #[cfg(not(target_os = "linux"))]
    for fd in &fds {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    let kind = match record {
        [b'S', b'Y', kind, VERSION, ..] => Kind::from_byte(kind),
        _ => None,
    };
    let kind =
        kind.ok_or_else(|| protocol_error(format!("not a switchyard record: {record:02x?}")))?;
    let count = u32::from_be_bytes([record[4], record[5], record[6], record[7]]);
    Ok((kind, count, fds))
}

/// Expects a record of `kind`.
fn expect(stream: &UnixStream, kind: Kind) -> io::Result<(u32, Vec<OwnedFd>)> {
    match receive(stream)? {
        (got, count, fds) if got == kind => Ok((count, fds)),
        (got, ..) => Err(protocol_error(format!("expected {kind:?}, got {got:?}"))),
    }
}

/// A listening TCP socket received from the old process, checked, with its address.
fn listening_socket(fd: OwnedFd) -> io::Result<(SocketAddr, TcpListener)> {
    use rustix::net::{sockopt, SocketType};
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let listening = sockopt::socket_acceptconn(&fd)?;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let listening = true;
    if sockopt::socket_type(&fd)? != SocketType::STREAM || !listening {
        return Err(protocol_error(
            "received a descriptor that is not a listening TCP socket",
        ));
    }
    let listener = TcpListener::from(fd);
    let addr = listener
        .local_addr()
        .map_err(|_| protocol_error("received a socket that is not TCP"))?;
    Ok((addr, listener))
}

/// The listening sockets a server offers a successor: duplicates of every proxy
/// listener and the admin listener's, taken before they are registered with a reactor.
/// Shared with the upgrade socket's thread, so that a server whose listeners change
/// while it runs (added or removed at a reload) replaces the set, and a removed
/// listener's socket is not kept open (and queueing connections) by its duplicate.
#[derive(Debug, Clone, Default)]
pub(crate) struct Offered(Arc<Mutex<Vec<OwnedFd>>>);

impl Offered {
    pub(crate) fn new(listeners: Vec<OwnedFd>) -> Offered {
        Offered(Arc::new(Mutex::new(listeners)))
    }

    /// From now on, offers `listeners` instead.
    pub(crate) fn replace(&self, listeners: Vec<OwnedFd>) {
        let old = std::mem::replace(&mut *self.lock(), listeners);
        drop(old);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OwnedFd>> {
        // A panic while the set was held leaves it whole: descriptors only.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a new process got from the running one: its listening sockets, and the
/// connection on which it says `R` once it serves.
#[derive(Debug)]
pub(crate) struct Takeover {
    stream: UnixStream,
    /// Every listening socket of the old process, with its address.
    pub(crate) listeners: Vec<(SocketAddr, TcpListener)>,
    /// How many there were (for the log, once they are taken).
    received: usize,
}

impl Takeover {
    /// Asks the process serving `path` for its listening sockets. `None` when no
    /// process serves it (no such file, or nothing listening: a stale file).
    pub(crate) fn ask(path: &Path) -> io::Result<Option<Takeover>> {
        let stream = match UnixStream::connect(path) {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        stream.set_read_timeout(Some(PEER_TIMEOUT))?;
        stream.set_write_timeout(Some(PEER_TIMEOUT))?;
        send(&stream, Kind::Hello, std::process::id(), &[])?;
        let mut listeners = Vec::new();
        loop {
            match receive(&stream)? {
                (Kind::Listeners, count, fds) if count as usize == fds.len() => {
                    for fd in fds {
                        listeners.push(listening_socket(fd)?);
                    }
                }
                (Kind::Listeners, count, fds) => {
                    return Err(protocol_error(format!(
                        "{count} sockets announced, {} received",
                        fds.len()
                    )))
                }
                (Kind::End, total, _) if total as usize == listeners.len() => break,
                (Kind::End, total, _) => {
                    return Err(protocol_error(format!(
                        "{total} sockets sent, {} received",
                        listeners.len()
                    )))
                }
                (kind, ..) => return Err(protocol_error(format!("unexpected {kind:?}"))),
            }
        }
        Ok(Some(Takeover {
            stream,
            received: listeners.len(),
            listeners,
        }))
    }

    /// Tells the old process that this one accepts now: it stops accepting and drains.
    fn ready(self) -> io::Result<()> {
        send(&self.stream, Kind::Ready, 0, &[])
    }
}

/// The Unix socket a server answers upgrade requests on, bound under a temporary name
/// until the server runs (see [`UpgradeSocket::serve`]).
#[derive(Debug)]
pub(crate) struct UpgradeSocket {
    path: PathBuf,
    temporary: Temporary,
    listener: UnixListener,
    takeover: Option<Takeover>,
}

impl UpgradeSocket {
    /// Takes the listening sockets of the process serving `path`, if one does, and
    /// binds this process's own upgrade socket next to it.
    pub(crate) fn bind(path: &Path) -> io::Result<UpgradeSocket> {
        let cannot = |e: io::Error| {
            io::Error::new(e.kind(), format!("upgrade socket {}: {e}", path.display()))
        };
        let takeover = Takeover::ask(path).map_err(cannot)?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.new", std::process::id()));
        let temporary = PathBuf::from(temporary);
        // Left over by a process of this id that died between bind and rename.
        let _ = fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary).map_err(cannot)?;
        // Whoever may connect may take the listeners and stop this process: its user
        // only, whatever the umask (connecting needs write permission).
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o600)).map_err(cannot)?;
        Ok(UpgradeSocket {
            path: path.to_owned(),
            temporary: Temporary(Some(temporary)),
            listener,
            takeover,
        })
    }

    /// The listening sockets taken over from the running process (none if there was
    /// none): `sockets::bind` uses them first.
    pub(crate) fn take_inherited(&mut self) -> Vec<(SocketAddr, TcpListener)> {
        self.takeover
            .as_mut()
            .map(|takeover| std::mem::take(&mut takeover.listeners))
            .unwrap_or_default()
    }

    /// Called once this server accepts: puts its socket at the path (atomically, in
    /// place of the old process's), tells the old process to drain, and answers
    /// upgrade requests from then on with `listeners` (duplicates of this server's
    /// listening sockets). A request that completes fires `handed_over`, then
    /// `shutdown`.
    pub(crate) fn serve(
        self,
        listeners: Offered,
        handed_over: Arc<Signal>,
        shutdown: Arc<Signal>,
    ) -> io::Result<UpgradeService> {
        let UpgradeSocket {
            path,
            mut temporary,
            listener,
            takeover,
        } = self;
        if let Some(temporary) = temporary.0.take() {
            fs::rename(&temporary, &path)?;
        }
        let identity = fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok();
        tracing::info!("upgrade socket at {}", path.display());
        if let Some(takeover) = takeover {
            let sockets = takeover.received;
            match takeover.ready() {
                Ok(()) => tracing::info!(
                    sockets,
                    "upgrade: took over the listening sockets of the running process; it drains now"
                ),
                // It went away; its sockets are ours now anyway.
                Err(error) => {
                    tracing::warn!(%error, sockets, "upgrade: the old process did not hear it may stop")
                }
            }
        }
        let (wake, woken) = UnixStream::pair()?;
        let offered = listeners.clone();
        thread::Builder::new()
            .name("switchyard-upgrade".into())
            .spawn(move || {
                answer_upgrades(&listener, &woken, &listeners, &handed_over, &shutdown)
            })?;
        Ok(UpgradeService {
            path,
            identity,
            wake,
            offered,
        })
    }
}

/// The temporary name of an upgrade socket not served yet, removed if it never is (a
/// listener could not be bound).
#[derive(Debug)]
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// The thread answering upgrade requests while the server runs.
#[derive(Debug)]
pub(crate) struct UpgradeService {
    path: PathBuf,
    /// The path's file as this process bound it: removed at the end only if still ours.
    identity: Option<(u64, u64)>,
    /// Hung up to stop the thread.
    wake: UnixStream,
    offered: Offered,
}

impl UpgradeService {
    /// Stops answering (the server is shutting down), without waiting: the thread lets
    /// go of its duplicates of the listening sockets, so that closing the listeners
    /// closes them, and removes the path unless a successor owns it now. A request
    /// being answered at that moment finishes first (within [`PEER_TIMEOUT`]).
    pub(crate) fn stop(self) {
        drop(self.wake);
        // At once, not when the thread ends (it may be answering a request): closing
        // the listeners must close their sockets.
        self.offered.replace(Vec::new());
        // Here, not in the thread: the process may exit before the thread runs again.
        let current = fs::metadata(&self.path).map(|m| (m.dev(), m.ino())).ok();
        if current.is_some() && current == self.identity {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Answers upgrade requests one at a time until `woken` hangs up or one succeeds.
fn answer_upgrades(
    listener: &UnixListener,
    woken: &UnixStream,
    listeners: &Offered,
    handed_over: &Signal,
    shutdown: &Signal,
) {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(woken, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => {
                tracing::error!(%error, "upgrade socket: cannot wait for requests");
                return;
            }
        }
        if !fds[1].revents().is_empty() || shutdown.is_set() {
            return;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "upgrade socket: accept failed");
                continue;
            }
        };
        if let Err(error) = same_user(&stream) {
            tracing::warn!(%error, "upgrade socket: request refused");
            continue;
        }
        // Copies, so that `stop` never waits for a conversation in progress.
        let offered: io::Result<Vec<OwnedFd>> =
            listeners.lock().iter().map(OwnedFd::try_clone).collect();
        let handed = offered.and_then(|offered| hand_over(&stream, &offered));
        match handed {
            Ok(pid) => {
                tracing::info!("upgrade: process {pid} took over the listening sockets; draining");
                handed_over.fire();
                shutdown.fire();
                return;
            }
            Err(error) => tracing::warn!(%error, "upgrade: a successor failed, serving on"),
        }
    }
}

/// Refuses a requester running as another user (the file's permissions already should;
/// this holds when they were loosened). Linux only: elsewhere the permissions decide.
fn same_user(stream: &UnixStream) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let peer = rustix::net::sockopt::socket_peercred(stream)?;
        let ours = rustix::process::geteuid();
        if peer.uid != ours && !ours.is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "process {} runs as user {}, not {}",
                    peer.pid.as_raw_nonzero(),
                    peer.uid.as_raw(),
                    ours.as_raw()
                ),
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
    Ok(())
}

/// Sends `listeners` to the process at the other end of `stream` and waits for it to
/// serve; returns its process id.
fn hand_over(stream: &UnixStream, listeners: &[OwnedFd]) -> io::Result<u32> {
    stream.set_read_timeout(Some(PEER_TIMEOUT))?;
    stream.set_write_timeout(Some(PEER_TIMEOUT))?;
    let (pid, _) = expect(stream, Kind::Hello)?;
    for batch in listeners.chunks(BATCH) {
        let fds: Vec<_> = batch.iter().map(AsFd::as_fd).collect();
        send(stream, Kind::Listeners, fds.len() as u32, &fds)?;
    }
    send(stream, Kind::End, listeners.len() as u32, &[])?;
    expect(stream, Kind::Ready)?;
    Ok(pid)
}

#[cfg(test)]
mod tests;
