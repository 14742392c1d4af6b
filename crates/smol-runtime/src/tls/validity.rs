//! A certificate's validity period, read at load time (start, `switchyard check`,
//! reload): one that has expired or is not valid yet is refused with its dates, one
//! that expires soon is reported so the binary can warn. Clients would refuse the first
//! kind anyway; refusing it at load turns a silent outage into one clear line.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{error, TlsError};

/// When a certificate stops being valid, as seconds since the Unix epoch.
pub(super) type NotAfter = i64;

/// The leaf's `notAfter`, once its period was found to contain `now`.
pub(super) fn check(file: &Path, leaf: &[u8], now: SystemTime) -> Result<NotAfter, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| error(file, format!("malformed certificate: {e}")))?;
    let validity = cert.validity();
    let now = unix(now);
    if validity.not_after.timestamp() < now {
        return Err(error(
            file,
            format!(
                "the certificate expired on {} (notAfter)",
                validity.not_after
            ),
        ));
    }
    if validity.not_before.timestamp() > now {
        return Err(error(
            file,
            format!(
                "the certificate is not valid before {} (notBefore)",
                validity.not_before
            ),
        ));
    }
    Ok(validity.not_after.timestamp())
}

/// Days from `now` to `not_after`, to the nearest (0: under half a day), when that is
/// less than `within` away.
pub(super) fn expires_within(
    not_after: NotAfter,
    now: SystemTime,
    within: Duration,
) -> Option<u64> {
    let left = not_after.saturating_sub(unix(now));
    let within = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
    (left < within).then(|| u64::try_from((left + 43_200) / 86_400).unwrap_or(0))
}

fn unix(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn only_what_expires_within_the_window_is_reported_in_days() {
        let now = UNIX_EPOCH + DAY * 1000;
        let at = |days: u32| unix(now + DAY * days);
        assert_eq!(expires_within(at(3), now, 14 * DAY), Some(3));
        assert_eq!(expires_within(at(13), now, 14 * DAY), Some(13));
        assert_eq!(expires_within(at(14), now, 14 * DAY), None);
        assert_eq!(expires_within(at(400), now, 14 * DAY), None);
        assert_eq!(expires_within(unix(now) + 60, now, 14 * DAY), Some(0));
        assert_eq!(expires_within(at(5) - 60, now, 14 * DAY), Some(5));
    }
}
