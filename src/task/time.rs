//! Timestamps: milliseconds since the Unix epoch, UTC. Shown and parsed as RFC 3339.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::limits;

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T20:14:38.123Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// Seconds since the epoch (fractions rounded to the millisecond), refused outside the
    /// years 0000 to 9999 ([`limits::TIME_MS_MIN`]..=[`limits::TIME_MS_MAX`]) rather than
    /// clamped, so that every accepted time is written back as RFC 3339.
    pub fn from_epoch_seconds(secs: f64) -> Result<Self, String> {
        let ms = (secs * 1000.0).round();
        // NOTE: compared as f64 before the cast, which would saturate ±1e300 to the i64 limits.
        if ms.is_finite() && ms >= limits::TIME_MS_MIN as f64 && ms <= limits::TIME_MS_MAX as f64 {
            Ok(Timestamp(ms as i64))
        } else {
            // Large numbers in exponent form: 1e300 rather than 301 digits.
            let shown = if secs.abs() < 1e15 {
                secs.to_string()
            } else {
                format!("{secs:e}")
            };
            Err(format!(
                "{shown} seconds since the epoch is outside the years 0000 to 9999"
            ))
        }
    }

    /// Parses RFC 3339 (any offset), a date `YYYY-MM-DD` (midnight UTC), Python's
    /// `isoformat()` without an offset (read as UTC), or a plain number of seconds since the
    /// epoch; a time outside the years 0000 to 9999 (UTC) is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = Self::parse_any(text)?;
        limits::check_time(t).map_err(|_| {
            format!(
                "the time {:?} is outside the years 0000 to 9999 (UTC)",
                limits::excerpt(text.trim())
            )
        })?;
        Ok(t)
    }

    fn parse_any(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(Timestamp(t.timestamp_millis()));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            let t = d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis());
            return t
                .map(Timestamp)
                .ok_or_else(|| format!("invalid date {text:?}"));
        }
        if let Ok(f) = text.parse::<f64>() {
            return Self::from_epoch_seconds(f);
        }
        // Python's isoformat without an offset ("2024-01-02T03:04:05.678901"): read as UTC.
        for fmt in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S",
        ] {
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
                return Ok(Timestamp(t.and_utc().timestamp_millis()));
            }
        }
        Err(format!(
            "invalid time {:?} (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)",
            limits::excerpt(text)
        ))
    }

    /// This time plus `ms` milliseconds (saturating).
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => Timestamp::parse(s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| "invalid number for a time".to_string())
                .and_then(Timestamp::from_epoch_seconds)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("expected an RFC 3339 string")),
        }
    }
}

// OpenAPI: a timestamp travels as an RFC 3339 text with milliseconds, in UTC.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .description(Some("RFC 3339 time in UTC with milliseconds"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}
