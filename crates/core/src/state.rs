//! The connection's phases and every legal transition between them, in one table (as
//! h11's `_state.py`). `Connection` only changes phase through [`next`].

/// Coarse state of a [`Connection`](crate::Connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// Waiting for (or reading) a request head.
    ReadingHead,
    /// A request head was accepted; waiting for the upstream connection.
    Connecting,
    /// Sending the request and forwarding its response.
    Exchange,
    /// Copying bytes both ways after a validated `101`.
    Tunnel,
    /// Over; no more input is accepted.
    Closed,
}

/// What moves a connection from one phase to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A request head was accepted and routed.
    HeadAccepted,
    /// The upstream connection is ready.
    Connected,
    /// A reused upstream connection closed before answering; a fresh one is asked for.
    Reconnect,
    /// The exchange ended and the client connection is kept alive.
    KeepAlive,
    /// A validated `101`: the connection becomes a tunnel.
    Switched,
    /// The connection ends (normally, by error, or by deadline).
    Close,
}

/// The transition table. `None` is an illegal transition (a bug in the core).
pub(crate) fn next(from: StateKind, step: Step) -> Option<StateKind> {
    use StateKind::*;
    use Step::*;
    match (from, step) {
        (ReadingHead, HeadAccepted) => Some(Connecting),
        (Connecting, Connected) => Some(Exchange),
        (Exchange, Reconnect) => Some(Connecting),
        (Exchange, KeepAlive) => Some(ReadingHead),
        (Exchange, Switched) => Some(Tunnel),
        (Closed, Close) => None,
        (_, Close) => Some(Closed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_validated_switch_enters_the_tunnel() {
        let all = [
            StateKind::ReadingHead,
            StateKind::Connecting,
            StateKind::Exchange,
            StateKind::Tunnel,
            StateKind::Closed,
        ];
        let steps = [
            Step::HeadAccepted,
            Step::Connected,
            Step::Reconnect,
            Step::KeepAlive,
            Step::Switched,
            Step::Close,
        ];
        for from in all {
            for step in steps {
                if next(from, step) == Some(StateKind::Tunnel) {
                    assert_eq!((from, step), (StateKind::Exchange, Step::Switched));
                }
            }
        }
    }

    #[test]
    fn closed_is_terminal() {
        for step in [
            Step::HeadAccepted,
            Step::Connected,
            Step::Reconnect,
            Step::KeepAlive,
            Step::Switched,
            Step::Close,
        ] {
            assert_eq!(next(StateKind::Closed, step), None);
        }
    }
}
