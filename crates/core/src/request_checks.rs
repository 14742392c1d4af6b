//! Rules a parsed request head must follow before it is forwarded (README §Security,
//! "What is rejected, and why"): target form, `Host`, framing, route, body limit.

use crate::config::{Config, RouteId};
use crate::error::ErrorKind;
use crate::field_kind::FieldKind;
use crate::framing::{self, BodyKind};
use crate::head::Head;

/// Rules for a parsed request head: target form, `Host`, framing, route, body limit.
pub(crate) fn check_request(
    head: &Head,
    config: &Config,
) -> Result<(RouteId, BodyKind), ErrorKind> {
    let target = head.slice(&head.target);
    let path: &[u8] = if target.starts_with(b"/") {
        target
    } else if target == b"*" && head.method() == b"OPTIONS" {
        b"/"
    } else if let Some(rest) = strip_scheme(target) {
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => &rest[i..],
            None => b"/",
        }
    } else {
        return Err(ErrorKind::BadTarget);
    };
    let mut hosts = head.values_of(FieldKind::Host);
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ErrorKind::BadHost),
        (None, None) if head.version == 1 => return Err(ErrorKind::BadHost),
        (Some(host), None) if !valid_host(host) => return Err(ErrorKind::BadHost),
        _ => {}
    }
    // `Transfer_Encoding` / `Content_Length` become framing fields for upstreams that
    // map `_` to `-` (CGI, WSGI): a length the proxy did not see. Refused.
    if head.has_kind(FieldKind::FramingLookalike) {
        return Err(ErrorKind::BadTransferEncoding);
    }
    let body = framing::request_body(head)?;
    let route = config.route_for(path).ok_or(ErrorKind::NoRoute)?;
    if let (BodyKind::Length(n), Some(max)) = (body, config.routes[route].max_body_bytes) {
        if n > max {
            return Err(ErrorKind::BodyTooLarge);
        }
    }
    Ok((route, body))
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// Bytes of `Host = uri-host [ ":" port ]`: reg-name, IPv4 or bracketed IPv6 characters.
const HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            );
        b += 1;
    }
    table
};

/// `Host = uri-host [ ":" port ]`: reg-name, IPv4 or bracketed IPv6 characters only.
fn valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| HOST_BYTE[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The table says what the list of allowed bytes says.
        #[test]
        fn host_bytes_are_the_listed_ones(b in any::<u8>()) {
            let listed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b);
            prop_assert_eq!(HOST_BYTE[usize::from(b)], listed);
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            prop_assert_eq!(crate::head::is_tchar(b), tchar);
        }
    }
}
