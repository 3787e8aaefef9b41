//! Timestamps: milliseconds since the Unix epoch, UTC. Shown and parsed as RFC 3339.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

    /// Parses RFC 3339 (any offset), a date `YYYY-MM-DD` (midnight UTC), or a plain number of
    /// seconds since the epoch.
    pub fn parse(text: &str) -> Result<Self, String> {
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
        if let Ok(f) = text.parse::<f64>()
            && f.is_finite()
            && f.abs() < 1e15
        {
            return Ok(Timestamp((f * 1000.0) as i64));
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
            "invalid time {text:?} (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)"
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
                .map(|f| Timestamp((f * 1000.0) as i64))
                .ok_or_else(|| serde::de::Error::custom("invalid number for a time")),
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
