//! Timestamps: one UTC instant type for the whole domain, parsed from RFC 3339 with any offset.
//!
//! Invariant: every `Timestamp` is UTC; offsets in the input are honoured, never dropped.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A point in time, always UTC. Inputs with other offsets are converted, not truncated.
pub type Timestamp = DateTime<Utc>;

/// Parses an RFC 3339 timestamp with any offset (`Z`, `-04:00`, ...) and up to nine fractional
/// digits. A timestamp without an offset is read as UTC, as the predecessor's plans did.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc());
        }
    }
    Err(format!(
        "`{text}` is not an RFC 3339 timestamp (expected e.g. 2025-01-31T14:30:00Z or 2025-01-31T09:30:00-05:00)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_converted_to_utc() {
        let t = parse_timestamp("2022-04-19T13:45:04.981350886-04:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2022-04-19T17:45:04.981350886+00:00");
    }

    #[test]
    fn naive_timestamps_are_utc() {
        let t = parse_timestamp("2025-01-31T14:30:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-31T14:30:00+00:00");
    }

    #[test]
    fn garbage_is_an_error_naming_the_input() {
        let err = parse_timestamp("yesterday").unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
    }
}
