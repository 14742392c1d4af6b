//! No splice(2) off the Linux reactor: a [`Pipe`] cannot exist, so the driver's splice
//! path is never taken and compiles to nothing, while its code stays the same.

use std::io;

/// Pipes taken and splices done (tests read them; always 0 here).
#[cfg(test)]
pub(crate) static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
#[cfg(test)]
pub(crate) static SPLICES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether splicing may be tried: never.
pub(crate) fn supported() -> bool {
    false
}

/// A pipe that cannot be made (no value of this type exists).
#[derive(Debug)]
pub(crate) enum Pipe {}

impl Pipe {
    /// Fails: there is no splice here.
    pub(crate) fn take() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Gives an empty pipe back to the pool.
    pub(crate) fn give(self) {
        match self {}
    }

    /// Bytes in the pipe.
    pub(crate) fn len(&self) -> usize {
        match *self {}
    }
}
