//! What a client received, as a list of statuses.

use crate::forwarded::find;

/// Statuses of the responses in what a client received, in order (1xx included). Lenient:
/// it only needs to find where each response ends; a truncated last one still counts.
pub fn client_statuses(received: &[u8], head_requests: bool) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut rest = received;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let status: u16 = head
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        statuses.push(status);
        let field = |name: &str| {
            head.split("\r\n").skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        if head_requests || (100..200).contains(&status) || status == 204 || status == 304 {
            continue;
        }
        if field("transfer-encoding").is_some() {
            loop {
                let Some(end) = find(rest, b"\r\n") else {
                    return statuses;
                };
                let size_text = String::from_utf8_lossy(&rest[..end]);
                let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
                let Ok(size) = usize::from_str_radix(&size_text, 16) else {
                    return statuses;
                };
                rest = &rest[end + 2..];
                if size == 0 {
                    match find(rest, b"\r\n") {
                        Some(0) => rest = &rest[2..],
                        _ => return statuses,
                    }
                    break;
                }
                if rest.len() < size + 2 {
                    return statuses;
                }
                rest = &rest[size + 2..];
            }
        } else if let Some(length) = field("content-length") {
            let Ok(length) = length.parse::<usize>() else {
                return statuses;
            };
            if rest.len() < length {
                return statuses;
            }
            rest = &rest[length..];
        } else {
            return statuses;
        }
    }
    statuses
}
