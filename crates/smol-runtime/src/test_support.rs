//! Helpers shared by the crate's unit tests.

use std::net::{TcpListener, TcpStream};

/// Two connected loopback sockets, both blocking: `(connecting end, accepted end)`.
pub(crate) fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (far, _) = listener.accept().unwrap();
    (near, far)
}
