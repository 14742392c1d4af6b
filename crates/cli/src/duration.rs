//! Durations as people write them in flags and config files: `60s`, `500ms`, `2m`, `1h`.

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse. The `Display` form is one line that quotes the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing was written.
    Empty,
    /// The text does not start with a digit (`-5s`, `s`, `.5s`).
    NoNumber(String),
    /// A number without a unit (`60`); a bare number is ambiguous, so it is refused.
    MissingUnit(String),
    /// A unit other than `ms`, `s`, `m`, `h`.
    UnknownUnit(String),
    /// The value does not fit in a duration.
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => {
                write!(f, "empty duration (write e.g. `60s`, `500ms`, `2m`, `1h`)")
            }
            DurationError::NoNumber(s) => write!(
                f,
                "invalid duration `{s}`: expected a whole number followed by a unit, like `60s`"
            ),
            DurationError::MissingUnit(s) => write!(
                f,
                "invalid duration `{s}`: missing unit (write `{s}s`, `{s}ms`, `{s}m` or `{s}h`)"
            ),
            DurationError::UnknownUnit(s) => write!(
                f,
                "invalid duration `{s}`: unknown unit (use `ms`, `s`, `m` or `h`)"
            ),
            DurationError::TooLarge(s) => write!(f, "invalid duration `{s}`: too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a whole number followed by a unit: `ms`, `s`, `m` or `h`.
///
/// Surrounding whitespace is ignored; nothing else is accepted (no fractions, no sign, no
/// compound values like `1m30s`), so a typo is an error rather than a surprise.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard::duration::parse_duration;
///
/// assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(parse_duration("60").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(DurationError::NoNumber(s.to_string()));
    }
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| DurationError::TooLarge(s.to_string()))?;
    let millis_per_unit: u64 = match unit {
        "" => return Err(DurationError::MissingUnit(s.to_string())),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::UnknownUnit(s.to_string())),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLarge(s.to_string()))
}

/// Formats a duration so that [`parse_duration`] reads back the same value, preferring the
/// units people write: seconds up to two minutes (`60s`, `90s`), then minutes up to two
/// hours (`2m`, `90m`), then hours.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard::duration::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(60)), "60s");
/// assert_eq!(format_duration(Duration::from_secs(120)), "2m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, mins) = (ms / 1_000, ms / 60_000);
    if ms % 1_000 != 0 {
        format!("{ms}ms")
    } else if secs < 120 || secs % 60 != 0 {
        format!("{secs}s")
    } else if mins < 120 || mins % 60 != 0 {
        format!("{mins}m")
    } else {
        format!("{}h", mins / 60)
    }
}

/// A duration read from a config file, such as `"10s"`; `"0s"` is allowed. A bad value is
/// reported by the TOML parser with the line it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// A timeout read from a config file, such as `"60s"`: like [`ConfigDuration`] but `"0s"`
/// is refused, since a zero deadline would fail every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTimeout(pub Duration);

/// The one line shown for a zero timeout, in flags and in files.
pub(crate) const ZERO_TIMEOUT: &str =
    "a timeout of `0s` is not allowed here (only the tunnel idle timeout may be `0s`, meaning off)";

struct DurationVisitor {
    allow_zero: bool,
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string like \"60s\", \"500ms\", \"2m\" or \"1h\"")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        let d = parse_duration(v).map_err(E::custom)?;
        if d.is_zero() && !self.allow_zero {
            return Err(E::custom(ZERO_TIMEOUT));
        }
        Ok(d)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: write it as a string with a unit, like \"{v}s\""
        )))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_i64(v as i64)
    }
}

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DurationVisitor { allow_zero: true })
            .map(ConfigDuration)
    }
}

impl<'de> serde::Deserialize<'de> for ConfigTimeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DurationVisitor { allow_zero: false })
            .map(ConfigTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn bare_number_is_refused_and_the_error_suggests_a_unit() {
        let err = parse_duration("60").unwrap_err();
        assert_eq!(err, DurationError::MissingUnit("60".into()));
        assert!(err.to_string().contains("`60s`"), "{err}");
    }

    #[test]
    fn unknown_units_and_shapes_are_refused() {
        assert_eq!(
            parse_duration("5sec"),
            Err(DurationError::UnknownUnit("5sec".into()))
        );
        assert_eq!(
            parse_duration("5 s"),
            Err(DurationError::UnknownUnit("5 s".into()))
        );
        assert_eq!(
            parse_duration("1m30s"),
            Err(DurationError::UnknownUnit("1m30s".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::UnknownUnit("1.5s".into()))
        );
        assert_eq!(
            parse_duration("-5s"),
            Err(DurationError::NoNumber("-5s".into()))
        );
        assert_eq!(
            parse_duration("s"),
            Err(DurationError::NoNumber("s".into()))
        );
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("   "), Err(DurationError::Empty));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLarge(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn format_round_trips_through_parse() {
        for text in [
            "500ms", "1500ms", "1s", "60s", "90s", "2m", "90m", "2h", "25h", "0s",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "60m");
        assert_eq!(format_duration(Duration::from_secs(61 * 60)), "61m");
    }
}
