//! The I/O backend the driver runs on.
pub(crate) use crate::reactor::{block_on, Io, Timer};
