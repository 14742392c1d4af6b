//! One TLS session on the driver's non-blocking socket: a client's (on a TLS listener)
//! or an upstream's (a group with `tls`, where switchyard is the TLS client).
//!
//! The driver calls this where it would call the socket: reads give plaintext, writes
//! take plaintext, and readiness counts what rustls holds. Everything rustls has to send
//! (handshake messages, session tickets, alerts) is written as soon as the socket takes
//! it and otherwise waits in rustls, which the driver sees as bytes pending towards the
//! client ([`TlsSession::wants_write`]), so `send_timeout` and `Flushed` mean what they
//! mean on a plain socket. Nothing here waits: the handshake is driven by the reads and
//! writes the core's phases ask for, so it counts against `header_timeout` like the
//! request head it comes before.
//!
//! A tunnel's bytes pass through here too, copied: there is no splice over TLS (kTLS,
//! which hands the record layer to the kernel after the handshake, would let a TLS
//! tunnel splice again; see docs/DECISIONS.md).

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::Io;
use crate::buffer::HTTP_READ_SIZE;
use crate::metrics::WorkerMetrics;

/// What a plain-HTTP request on a TLS listener gets, as nginx answers it.
/// rustls refuses more records once it holds more than 16 KiB of plaintext; feeding
/// stops at this much, and the rest waits in `ciphertext`.
const PLAINTEXT_HELD: usize = 16 * 1024;

const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to a TLS port.\r\n";

/// A TLS session, either side (see the module docs).
#[derive(Debug)]
pub(crate) struct TlsSession {
    state: RefCell<State>,
}

#[derive(Debug)]
struct State {
    conn: rustls::Connection,
    /// Plaintext rustls holds, ready to be read.
    plaintext: usize,
    /// Records read from the socket that rustls could not take yet (it holds at most
    /// 16 KiB of plaintext): empty, and unallocated, unless the client sends faster
    /// than it is read.
    ciphertext: Vec<u8>,
    /// The client closed (close_notify or EOF): once the plaintext is read, reads end.
    closed: bool,
    /// The handshake or a record failed: nothing more is read, and only `farewell` is
    /// written.
    failed: bool,
    /// Written as they are after a failure: the alert rustls made, or the plain-text
    /// `400` for a plain-HTTP request.
    farewell: Vec<u8>,
    /// The connection's first byte, once read (a TLS record starts with 0x16; a letter
    /// is a plain-HTTP request).
    first_byte: Option<u8>,
    /// The peer's address, for logs.
    peer: SocketAddr,
    metrics: Option<Rc<WorkerMetrics>>,
}

/// Most bytes one read takes from the socket: rustls itself reads 4 KiB at a time,
/// which would cost a 64 KiB message sixteen system calls.
const SOCKET_READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// Where each socket read lands before rustls takes it (one per thread, as the
    /// HTTP phase's read buffer).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The socket as rustls writes it.
struct SocketWriter<'a>(&'a Io<TcpStream>);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.write_vectored(&[IoSlice::new(buffer)])
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    /// A session under `config` for the client at `client`; a failed handshake is
    /// counted in `metrics`. `early` is ciphertext already read from the socket (what
    /// followed a PROXY protocol header), taken before anything the socket gives.
    pub(crate) fn new(
        config: Arc<rustls::ServerConfig>,
        client: SocketAddr,
        metrics: Option<Rc<WorkerMetrics>>,
        early: BytesMut,
    ) -> Result<Self, rustls::Error> {
        let conn = rustls::ServerConnection::new(config)?;
        Ok(Self::with(conn.into(), client, metrics, early))
    }

    /// A session towards the upstream server at `server`, verified as `name` under
    /// `config`; nothing is sent until [`TlsSession::handshake`].
    pub(crate) fn client(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        server: SocketAddr,
    ) -> Result<Self, rustls::Error> {
        let conn = rustls::ClientConnection::new(config, name)?;
        Ok(Self::with(conn.into(), server, None, BytesMut::new()))
    }

    fn with(
        conn: rustls::Connection,
        peer: SocketAddr,
        metrics: Option<Rc<WorkerMetrics>>,
        early: BytesMut,
    ) -> Self {
        TlsSession {
            state: RefCell::new(State {
                conn,
                plaintext: 0,
                first_byte: early.first().copied(),
                ciphertext: early.to_vec(),
                closed: false,
                failed: false,
                farewell: Vec::new(),
                peer,
                metrics,
            }),
        }
    }

    /// Drives the handshake to its end (a client session's, before any request is
    /// written): `Ok` once it is complete; a rustls error (a certificate that does not
    /// verify, an alert) comes as an `InvalidData` error wrapping it (see
    /// [`rustls_error`]), the server's close as `UnexpectedEof`.
    pub(crate) async fn handshake(&self, socket: &Io<TcpStream>) -> io::Result<()> {
        loop {
            let wait_writable = {
                let mut state = self.state.borrow_mut();
                match state.flush(socket) {
                    Ok(()) if !state.conn.is_handshaking() => return Ok(()),
                    Ok(()) => match state.read_socket(socket) {
                        Ok(()) if state.closed => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "closed during the TLS handshake",
                            ))
                        }
                        Ok(()) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                        Err(e) => return Err(e),
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) => return Err(e),
                }
            };
            if wait_writable {
                std::future::poll_fn(|cx| socket.poll_writable(cx)).await;
            } else {
                socket.readable().await;
            }
        }
    }

    /// Whether the session holds nothing unread and is still usable: an upstream
    /// connection is pooled only then.
    pub(crate) fn is_idle(&self) -> bool {
        let state = self.state.borrow();
        state.plaintext == 0
            && state.ciphertext.is_empty()
            && !state.closed
            && !state.failed
            && !state.conn.wants_write()
    }

    /// A read would not wait for the socket: plaintext is held, or the end is to be
    /// reported.
    pub(crate) fn has_readable(&self) -> bool {
        let state = self.state.borrow();
        state.plaintext > 0 || !state.ciphertext.is_empty() || state.closed || state.failed
    }

    /// Bytes rustls (or a farewell) still has to write to the socket.
    pub(crate) fn wants_write(&self) -> bool {
        let state = self.state.borrow();
        if state.failed {
            !state.farewell.is_empty()
        } else {
            state.conn.wants_write()
        }
    }

    /// Reads plaintext into `buffer`: `Ok(0)` at the client's end, `WouldBlock` when
    /// the socket is drained and no plaintext is held (mid-record, mid-handshake).
    pub(crate) fn read(&self, socket: &Io<TcpStream>, buffer: &mut [u8]) -> io::Result<usize> {
        let mut state = self.state.borrow_mut();
        state.fill(socket)?;
        if state.plaintext == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let n = state.conn.reader().read(buffer)?;
        state.plaintext -= n;
        Ok(n)
    }

    /// One HTTP-phase read: the plaintext held (at most [`HTTP_READ_SIZE`]) in a buffer
    /// of its size, empty at the client's end.
    pub(crate) fn read_http(&self, socket: &Io<TcpStream>) -> io::Result<BytesMut> {
        let held = {
            let mut state = self.state.borrow_mut();
            state.fill(socket)?;
            state.plaintext.min(HTTP_READ_SIZE)
        };
        let mut buffer = BytesMut::zeroed(held);
        let n = self.read(socket, &mut buffer)?;
        buffer.truncate(n);
        Ok(buffer)
    }

    /// Writes what rustls holds, then encrypts `slices` and writes that too as far as
    /// the socket takes it. Returns the plaintext bytes taken (0 only when `slices`
    /// are empty: what rustls held went out), `WouldBlock` when the socket is full
    /// before any was taken.
    pub(crate) fn write_vectored(
        &self,
        socket: &Io<TcpStream>,
        slices: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let mut state = self.state.borrow_mut();
        state.flush(socket)?;
        if state.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if slices.iter().all(|slice| slice.is_empty()) {
            return Ok(0);
        }
        let taken = state.conn.writer().write_vectored(slices)?;
        if taken == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        match state.flush(socket) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            // What the socket did not take waits in rustls (`wants_write`).
            _ => Ok(taken),
        }
    }

    /// Ends writing the TLS way (close_notify), as far as the socket takes it now;
    /// true when all of it went out. Mid-handshake nothing is sent: the connection
    /// closes silently, as a plain one that sent no request does.
    pub(crate) fn close_notify(&self, socket: &Io<TcpStream>) -> bool {
        let mut state = self.state.borrow_mut();
        if !state.failed && !state.conn.is_handshaking() {
            state.conn.send_close_notify();
        }
        state.flush(socket).is_ok()
    }
}

impl State {
    /// Reads and decrypts until plaintext is held, the client ended, or the socket is
    /// drained (`WouldBlock`).
    fn fill(&mut self, socket: &Io<TcpStream>) -> io::Result<()> {
        loop {
            if self.failed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS failed"));
            }
            if self.plaintext > 0 || self.closed {
                return Ok(());
            }
            if self.ciphertext.is_empty() {
                self.read_socket(socket)?;
            } else {
                let mut held = std::mem::take(&mut self.ciphertext);
                let taken = self.take_records(socket, &held)?;
                if taken == 0 && self.plaintext == 0 && !self.closed {
                    // rustls takes nothing and gives nothing: never in a valid stream,
                    // and waiting would spin.
                    self.fail(&rustls::Error::General("records not taken".into()));
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS stalled"));
                }
                held.drain(..taken);
                if !held.is_empty() {
                    self.ciphertext = held;
                }
            }
        }
    }

    /// One read from the socket, given to rustls; what it cannot take yet is kept.
    fn read_socket(&mut self, socket: &Io<TcpStream>) -> io::Result<()> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            scratch.reserve_exact(SOCKET_READ_SIZE);
            if socket.read_spare(&mut scratch)? == 0 {
                self.closed = true;
                return Ok(());
            }
            if self.first_byte.is_none() {
                self.first_byte = Some(scratch[0]);
            }
            let taken = self.take_records(socket, &scratch)?;
            if taken < scratch.len() {
                self.ciphertext = scratch[taken..].to_vec();
            }
            Ok(())
        })
    }

    /// Gives rustls as much of `records` as it takes, processing each piece; returns
    /// how much it took (all of it, unless its plaintext buffer filled up).
    fn take_records(&mut self, socket: &Io<TcpStream>, records: &[u8]) -> io::Result<usize> {
        let mut rest = records;
        while !rest.is_empty() && self.plaintext < PLAINTEXT_HELD {
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                // Its buffers are full: the rest waits for the plaintext to be read.
                Err(_) => break,
            }
            self.process(socket)?;
        }
        Ok(records.len() - rest.len())
    }

    /// Decrypts what rustls took; a failure ends the session (see [`State::fail`]).
    fn process(&mut self, socket: &Io<TcpStream>) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(io_state) => {
                self.plaintext = io_state.plaintext_bytes_to_read();
                self.closed = io_state.peer_has_closed();
            }
            Err(error) => {
                self.fail(&error);
                // The farewell goes out as far as the socket takes it; the rest
                // waits for the driver's writes (and the close's flush).
                let _ = self.flush(socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
        // Handshake messages and tickets: written now if the socket takes them.
        match self.flush(socket) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// The handshake (or a later record) failed: a debug-level event and a count,
    /// never more, since any client can cause it.
    fn fail(&mut self, error: &rustls::Error) {
        self.failed = true;
        // Only a listener answers plain HTTP; an upstream's plain answer is its failure.
        let listening = matches!(self.conn, rustls::Connection::Server(_));
        let plain_http = listening && self.first_byte.is_some_and(|b| b.is_ascii_uppercase());
        if plain_http {
            tracing::debug!(client = %self.peer, "plain HTTP on a TLS listener: 400");
            self.farewell = PLAIN_HTTP_ANSWER.to_vec();
        } else {
            tracing::debug!(peer = %self.peer, %error, "TLS failed");
            // The alert rustls queued for the client.
            let mut alert = Vec::new();
            while self.conn.wants_write() {
                if self.conn.write_tls(&mut alert).is_err() {
                    break;
                }
            }
            self.farewell = alert;
        }
        if !listening || (!self.conn.is_handshaking() && !plain_http) {
            return; // a broken record after the handshake is not a handshake failure
        }
        if let Some(metrics) = &self.metrics {
            metrics.tls_handshake_failed();
        }
    }

    /// Writes what waits (rustls's records, or the farewell) until done or `WouldBlock`.
    fn flush(&mut self, socket: &Io<TcpStream>) -> io::Result<()> {
        if self.failed {
            while !self.farewell.is_empty() {
                let n = socket.write_vectored(&[IoSlice::new(&self.farewell)])?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                self.farewell.drain(..n);
            }
            return Ok(());
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut SocketWriter(socket))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The rustls error inside an error of a session's read, write or handshake, if that is
/// what it is.
pub(crate) fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}
