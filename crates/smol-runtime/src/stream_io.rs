//! Waiting reads and writes on one socket, for the proxy's own short conversations
//! outside a connection's driver: the admin listener's answers, a health check's
//! request, a PROXY header written before a TLS handshake.

use std::io::{self, IoSlice};
use std::net::TcpStream;

use crate::backend::Io;

/// A failure that means "not now": the socket is drained (or full), or a signal
/// interrupted the call.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Writes all of `bytes`, waiting while the socket is full.
pub(crate) async fn write_all(stream: &Io<TcpStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write_vectored(&[IoSlice::new(bytes)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if is_transient(&error) => {
                std::future::poll_fn(|cx| stream.poll_writable(cx)).await
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Reads what is there into `buffer`, waiting until something is (0: the peer's EOF).
pub(crate) async fn read_some(stream: &Io<TcpStream>, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buffer) {
            Err(error) if is_transient(&error) => stream.readable().await,
            result => return result,
        }
    }
}
