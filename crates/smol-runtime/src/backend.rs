//! The I/O backend the driver runs on.
pub(crate) use crate::pipe::{supported as pipe_supported, Pipe};
pub(crate) use crate::reactor::{block_on, Io, Timer};
