//! The `ReadingHead` phase: finding the next request head in what the client sent,
//! checking it, and turning it into an [`Exchange`] bound for its route's upstream.

use std::time::Instant;

use crate::connection::Connection;
use crate::error::{ErrorKind, ProtocolError};
use crate::event::Event;
use crate::exchange::{Accepted, Exchange};
use crate::field_kind::FieldKind;
use crate::framing::BodyKind;
use crate::head::{self, Head, HeadScanner, Scan};
use crate::headers::{self, RequestExtras};
use crate::io::Output;
use crate::request_checks::check_request;
use crate::state::{Phase, Step};
use crate::text::Text;
use crate::timer::Deadline;
use crate::upgrade;

/// What the `ReadingHead` phase waits for, and until when. Both deadlines are
/// connection-wide ([`Config::timeouts`](crate::Config::timeouts)): they run before a
/// request has picked its route.
#[derive(Debug)]
pub(crate) enum Reading {
    /// A kept-alive connection waiting for its next request (`idle_timeout`).
    Idle {
        /// When the connection is closed if no request starts.
        deadline: Instant,
    },
    /// A request head due by `deadline` (`header_timeout`): a fresh connection's first
    /// from the accept, a later one from its first byte.
    Head {
        /// When the head must be complete.
        deadline: Instant,
        /// Whether any byte of it arrived.
        started: bool,
        /// How far the end of the head has been searched for.
        scanner: HeadScanner,
    },
}

impl Reading {
    /// A fresh connection: its first head is due by `deadline`.
    pub(crate) fn first(deadline: Instant) -> Self {
        Reading::Head {
            deadline,
            started: false,
            scanner: HeadScanner::default(),
        }
    }

    /// A kept-alive connection, idle until `deadline`.
    pub(crate) fn idle(deadline: Instant) -> Self {
        Reading::Idle { deadline }
    }

    /// A fresh connection's first head, not begun, is now due by `deadline` at the
    /// latest (a drain began); false when this is a kept-alive connection between
    /// requests, which a drain closes at once.
    pub(crate) fn wait_first_head_until(&mut self, deadline: Instant) -> bool {
        match self {
            Reading::Head {
                deadline: due,
                started: false,
                ..
            } => {
                *due = (*due).min(deadline);
                true
            }
            _ => false,
        }
    }

    /// Whether bytes of a head have arrived.
    pub(crate) fn started(&self) -> bool {
        matches!(self, Reading::Head { started: true, .. })
    }

    /// The first byte of a head arrived. A kept-alive connection's head is due by
    /// `header_by`; a fresh connection's first keeps the deadline that runs from its accept.
    fn start(&mut self, header_by: Instant) {
        let deadline = match self {
            Reading::Idle { .. } => header_by,
            Reading::Head { deadline, .. } => *deadline,
        };
        *self = Reading::Head {
            deadline,
            started: true,
            scanner: HeadScanner::default(),
        };
    }

    pub(crate) fn deadline(&self) -> (Deadline, Instant) {
        match self {
            Reading::Idle { deadline } => (Deadline::Idle, *deadline),
            Reading::Head { deadline, .. } => (Deadline::Header, *deadline),
        }
    }
}

impl Connection {
    /// Looks for a complete request head in what the client sent; true when one was
    /// taken (accepted or refused).
    pub(crate) fn read_request_head(&mut self) -> bool {
        let Phase::ReadingHead(reading) = &mut self.phase else {
            return false;
        };
        if self.client_buf.is_empty() {
            return false;
        }
        let started = reading.started();
        if !started {
            if !head::skip_leading_crlf(&mut self.client_buf) {
                return false;
            }
            // A request starts with a method token: anything else (say, WebSocket frames
            // held behind a refused upgrade) is refused now, not at the header deadline.
            if !head::is_tchar(self.client_buf[0]) {
                self.reject(ProtocolError::client(ErrorKind::MalformedHead));
                return false;
            }
        }
        let fresh = match reading {
            Reading::Idle { .. } => true,
            Reading::Head { scanner, .. } => scanner.is_fresh(),
        };
        if fresh {
            // The usual case: the whole head came in one read (and no header deadline
            // needs to be set for it).
            let mut head = Head::empty();
            if let Some(end) =
                head::parse_request_whole(&self.client_buf, &self.config.limits, &mut head)
            {
                head.bytes = self.client_buf.split_to(end).freeze();
                self.accept_request(&head);
                return true;
            }
        }
        if !started {
            reading.start(self.now + self.config.timeouts.header);
        }
        let Reading::Head { scanner, .. } = reading else {
            return false;
        };
        match scanner.scan(&self.client_buf, &self.config.limits) {
            Err(kind) => {
                self.reject(ProtocolError::client(kind));
                false
            }
            Ok(Scan::Partial) => false,
            Ok(Scan::Complete(end)) => {
                let bytes = self.client_buf.split_to(end).freeze();
                match head::parse_request(bytes, &self.config.limits) {
                    Ok(head) => self.accept_request(&head),
                    Err(kind) => self.reject(ProtocolError::client(kind)),
                }
                true
            }
        }
    }

    /// A parsed head: checked, routed, and sent on its way to the upstream.
    fn accept_request(&mut self, head: &Head) {
        // httparse gave both as `&str`.
        let method = Text::from_utf8_bytes(head.bytes.slice(head.first.clone()));
        let target = Text::from_utf8_bytes(head.bytes.slice(head.target.clone()));
        let (route, body) = match check_request(head, &self.config) {
            Ok(checked) => checked,
            Err(kind) => {
                return self.refuse_request(method, target, head, ProtocolError::client(kind))
            }
        };
        let proposal = upgrade::proposal(head, &self.config.routes[route].allow_upgrade);
        let extras = RequestExtras {
            chunked: body == BodyKind::Chunked,
            upgrade: proposal.as_ref().map(|p| &p.upgrade[..]),
            empty_host: head.version == 0 && !head.has_kind(FieldKind::Host),
        };
        let upstream_head =
            headers::upstream_request(head, &self.config.forwarding, &self.peer, &extras);
        self.out.push_back(Output::Event(Event::Request {
            method: method.clone(),
            target: target.clone(),
            route,
            // Protocol tokens (checked by `upgrade::proposal`) joined by ", ": ASCII.
            upgrade: proposal
                .as_ref()
                .map(|p| Text::from_utf8_bytes(p.upgrade.clone())),
        }));
        let accepted = Accepted {
            route,
            method,
            target,
            body,
            proposal,
            upstream_head,
        };
        let exchange = Exchange::boxed(accepted, head, self.now, &self.config.limits);
        let connect_by = self.now + self.config.routes[route].timeouts.connect;
        if self.enter(Step::HeadAccepted {
            exchange,
            connect_by,
        }) {
            self.connect();
        }
    }
}
