#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod forwarded;
mod proxy;
mod reply;
mod statuses;
mod vector;
mod vectors;
mod verify;

pub use forwarded::{
    parse_forwarded, view_upstream, Forwarded, Parsed, UpstreamView, NEVER_FORWARDED,
};
pub use proxy::{proxy_vectors, ProxyVector};
pub use reply::reply_bytes;
pub use statuses::client_statuses;
pub use vector::{Reply, Side, Up, Vector, ACCEPT, KEY, NEXT, SMUGGLED};
pub use verify::{verify, Observed};

/// Every vector of the corpus, in a fixed order; names are unique.
///
/// # Examples
///
/// ```
/// let vectors = switchyard_corpus::all();
/// let hostile = vectors.iter().filter(|vector| vector.is_hostile()).count();
/// assert_eq!((vectors.len(), hostile), (161, 153));
/// ```
pub fn all() -> Vec<Vector> {
    vectors::all()
}
