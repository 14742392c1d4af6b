//! Durations as people write them in flags and config files: `60s`, `500ms`, `2m`, `1h`,
//! and `off` for the settings that can be off.

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
    /// Where a setting can be off: neither `off` nor a number (`none`, `Off`).
    NotDurationOrOff(String),
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
            DurationError::NotDurationOrOff(s) => write!(
                f,
                "invalid duration `{s}`: expected `off` or a whole number followed by a unit, like `30s`"
            ),
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

/// The word that turns off a setting that can be off (`tunnel_idle_timeout`,
/// `ws_ping_interval`); `0s` means the same.
pub const OFF: &str = "off";

/// Parses a setting that can be off: [`OFF`] or `0s` is `None`, any other duration is
/// `Some`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use switchyard::duration::parse_duration_or_off;
///
/// assert_eq!(parse_duration_or_off("30s"), Ok(Some(Duration::from_secs(30))));
/// assert_eq!(parse_duration_or_off("off"), Ok(None));
/// assert_eq!(parse_duration_or_off("0s"), Ok(None));
/// assert!(parse_duration_or_off("30").is_err());
/// ```
pub fn parse_duration_or_off(text: &str) -> Result<Option<Duration>, DurationError> {
    if text.trim() == OFF {
        return Ok(None);
    }
    match parse_duration(text) {
        Ok(d) => Ok((!d.is_zero()).then_some(d)),
        // Whoever wrote a word here most likely meant to turn the setting off.
        Err(DurationError::NoNumber(s)) => Err(DurationError::NotDurationOrOff(s)),
        Err(e) => Err(e),
    }
}

/// Formats a setting that can be off: [`OFF`] or what [`format_duration`] writes.
pub fn format_duration_or_off(d: Option<Duration>) -> String {
    d.map_or_else(|| OFF.to_string(), format_duration)
}

/// The one line shown for a zero timeout, in flags and in files.
const ZERO_TIMEOUT: &str = "a timeout of `0s` is not allowed here (only tunnel_idle_timeout and ws_ping_interval can be off, with `off` or `0s`)";

/// Parses a timeout: a duration other than `0s`, since a zero deadline would fail every
/// request (or declare every peer dead).
pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(ZERO_TIMEOUT.to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// [`parse_duration`] with the error as text, as clap and serde take it.
pub(crate) fn parse_any_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// [`parse_duration_or_off`] with the error as text, as clap and serde take it.
pub(crate) fn parse_duration_or_off_text(text: &str) -> Result<DurationOrOff, String> {
    parse_duration_or_off(text)
        .map(DurationOrOff)
        .map_err(|e| e.to_string())
}

/// A duration read from a config file, such as `"10s"`; `"0s"` is allowed. A bad value is
/// reported by the TOML parser with the line it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// A timeout read from a config file, such as `"60s"`: like [`ConfigDuration`] but `"0s"`
/// is refused, since a zero deadline would fail every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTimeout(pub Duration);

/// A setting that can be off, from a flag or a config file: `"off"` or `"0s"` is
/// `DurationOrOff(None)`, see [`parse_duration_or_off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationOrOff(pub Option<Duration>);

/// Reads a TOML string with `parse`, and refuses a bare number with the fix.
struct DurationVisitor<T> {
    parse: fn(&str) -> Result<T, String>,
    expecting: &'static str,
}

impl<T> serde::de::Visitor<'_> for DurationVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format!(
            "invalid duration {v}: write it as a string with a unit, like \"{v}s\""
        )))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_i64(v as i64)
    }
}

const EXPECTING_DURATION: &str = "a duration string like \"60s\", \"500ms\", \"2m\" or \"1h\"";

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor {
            parse: |s| parse_any_duration(s).map(ConfigDuration),
            expecting: EXPECTING_DURATION,
        })
    }
}

impl<'de> serde::Deserialize<'de> for ConfigTimeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor {
            parse: |s| parse_timeout(s).map(ConfigTimeout),
            expecting: EXPECTING_DURATION,
        })
    }
}

impl<'de> serde::Deserialize<'de> for DurationOrOff {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor {
            parse: parse_duration_or_off_text,
            expecting: "a duration string like \"30s\", or \"off\"",
        })
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

    #[test]
    fn off_and_zero_turn_a_setting_off() {
        for text in ["off", " off ", "0s", "0ms", "0h"] {
            assert_eq!(parse_duration_or_off(text), Ok(None), "{text}");
        }
        assert_eq!(
            parse_duration_or_off("30s"),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(format_duration_or_off(None), "off");
        assert_eq!(format_duration_or_off(Some(Duration::from_secs(30))), "30s");
    }

    #[test]
    fn other_words_are_refused_and_the_error_names_off() {
        for text in ["Off", "OFF", "none", "false", "offs"] {
            let err = parse_duration_or_off(text).unwrap_err();
            assert_eq!(err, DurationError::NotDurationOrOff(text.into()));
            assert!(err.to_string().contains("expected `off` or"), "{err}");
        }
        assert_eq!(
            parse_duration_or_off("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        assert_eq!(parse_duration_or_off(""), Err(DurationError::Empty));
    }

    #[test]
    fn a_timeout_is_never_zero_nor_off() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        let zero = parse_timeout("0s").unwrap_err();
        assert!(zero.contains("`0s` is not allowed here"), "{zero}");
        let off = parse_timeout("off").unwrap_err();
        assert!(off.contains("invalid duration `off`"), "{off}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Keys {
        off: Option<DurationOrOff>,
        timeout: Option<ConfigTimeout>,
        any: Option<ConfigDuration>,
    }

    fn keys(text: &str) -> Result<Keys, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn file_values_follow_the_same_rules_as_flags() {
        let k = keys("off = \"off\"\ntimeout = \"10s\"\nany = \"0s\"\n").unwrap();
        assert_eq!(k.off, Some(DurationOrOff(None)));
        assert_eq!(k.timeout, Some(ConfigTimeout(Duration::from_secs(10))));
        assert_eq!(k.any, Some(ConfigDuration(Duration::ZERO)));
        assert_eq!(
            keys("off = \"45s\"").unwrap().off,
            Some(DurationOrOff(Some(Duration::from_secs(45))))
        );
        assert!(keys("timeout = \"0s\"")
            .unwrap_err()
            .contains("`0s` is not allowed here"));
        assert!(keys("any = \"off\"")
            .unwrap_err()
            .contains("invalid duration `off`"));
        let bare = keys("off = 30").unwrap_err();
        assert!(
            bare.contains("write it as a string with a unit, like \"30s\""),
            "{bare}"
        );
        let boolean = keys("off = false").unwrap_err();
        assert!(
            boolean.contains("expected a duration string like \"30s\", or \"off\""),
            "{boolean}"
        );
    }
}
