//! What a schedule is: when it fires (a cron expression in a time zone, or a fixed interval),
//! what each firing creates, and its overlap and catch-up policies. Validated as a whole
//! before anything is written, each problem naming its field.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::TimeZone;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::task::Timestamp;

/// Longest schedule name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest cron expression, in bytes.
pub const CRON_BYTES_MAX: usize = 256;
/// Shortest interval: fast enough for tests, slow enough not to flood the log by mistake.
pub const EVERY_MS_MIN: u64 = 10;
/// Longest interval: about ten years.
pub const EVERY_MS_MAX: u64 = 10 * 366 * 86_400_000;
/// Largest jitter: one day.
pub const JITTER_MS_MAX: u64 = 86_400_000;
/// Most missed firings one catch-up may create.
pub const CATCH_UP_MAX_LIMIT: u32 = 1_000;
/// Earliest `start_at`/`end_at`: 0001-01-01T00:00:00Z (keeps interval arithmetic far from
/// overflow, and croner supports years 1 to 4999 only).
const TIME_MS_MIN: i64 = -62_135_596_800_000;
/// Latest `start_at`/`end_at`: 9999-12-31T23:59:59.999Z.
const TIME_MS_MAX: i64 = 253_402_300_799_999;
/// With `catch_up: none`, a firing is still "on time" this long after its fire time (the
/// scheduler polls; a tick that comes a little late must not skip it).
pub const ON_TIME_GRACE_MS: i64 = 60_000;

/// What happens to a firing while an earlier run of the schedule is still pending or running.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overlap {
    /// Drop it (counted as skipped).
    #[default]
    Skip,
    /// Hold the most recent one back and create it when the active run ends.
    QueueOne,
    /// Create it anyway: runs may overlap.
    Allow,
}

/// What happens to firings missed while no scheduler ran (downtime, a clock jump forward).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CatchUp {
    /// Missed firings are dropped; only a firing less than a minute late still runs.
    None,
    /// Only the most recent missed firing runs.
    #[default]
    Latest,
    /// The most recent `catch_up_max` missed firings run, oldest first.
    All,
}

/// The task each firing creates.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskTemplate {
    /// Title (default: the schedule's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Priority, 0 to 10.
    #[cfg_attr(feature = "openapi", schema(maximum = 10))]
    pub priority: u8,
    /// The runtime kind (handler) that runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The runtime input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// A schedule's definition, as given by its creator (and stored in its record's metadata).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unique name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub name: String,
    /// A cron expression (5 fields, or 6 with seconds first), e.g. `0 9 * * 1-5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default `UTC`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A fixed interval in milliseconds instead of a cron expression, counted from `start_at`
    /// (or from the schedule's creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 10, maximum = 316_224_000_000_u64)
    )]
    pub every_ms: Option<u64>,
    /// The task each firing creates.
    pub task: TaskTemplate,
    /// Overlap policy (default `skip`).
    pub overlap: Overlap,
    /// Catch-up policy after downtime (default `latest`).
    pub catch_up: CatchUp,
    /// With `catch_up: all`, at most this many missed firings (default 10, at most 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub catch_up_max: Option<u32>,
    /// Each run is held back by a random-looking delay below this (ms), the same in every
    /// process for one fire time.
    #[cfg_attr(feature = "openapi", schema(maximum = 86_400_000))]
    pub jitter_ms: u64,
    /// No firing before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    /// No firing after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Timestamp>,
    /// A paused schedule does not fire.
    pub paused: bool,
}

/// A validated definition, ready to compute fire times.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub(crate) spec: ScheduleSpec,
    when: When,
    start_ms: i64,
    end_ms: i64,
}

#[derive(Clone, Debug)]
enum When {
    Cron(Box<Cron>, chrono_tz::Tz),
    Every { every_ms: i64, anchor_ms: i64 },
}

fn bad(at: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        at: Some(at.into()),
        reason: reason.into(),
    }
}

/// Checks a schedule name.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(bad("name", "a schedule name has 1 to 64 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad(
            "name",
            format!("schedule name {name:?} may hold only A-Z, a-z, 0-9, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

impl ScheduleSpec {
    /// Validates the definition. `anchor_ms` is where an interval counts from when
    /// `start_at` is not set (the schedule's creation).
    pub fn compile(&self, anchor_ms: i64) -> Result<Compiled> {
        check_name(&self.name)?;
        let when = match (&self.cron, self.every_ms) {
            (Some(_), Some(_)) => return Err(bad("every_ms", "give cron or every_ms, not both")),
            (None, None) => return Err(bad("cron", "give cron (with timezone) or every_ms")),
            (Some(expr), None) => {
                if expr.len() > CRON_BYTES_MAX {
                    return Err(bad("cron", "a cron expression has at most 256 bytes"));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| bad("cron", format!("invalid cron expression {expr:?}: {e}")))?;
                let tz_name = self.timezone.as_deref().unwrap_or("UTC");
                let tz = chrono_tz::Tz::from_str(tz_name).map_err(|_| {
                    bad(
                        "timezone",
                        format!("unknown time zone {tz_name:?} (expected an IANA name such as Europe/Berlin)"),
                    )
                })?;
                When::Cron(Box::new(cron), tz)
            }
            (None, Some(every)) => {
                if self.timezone.is_some() {
                    return Err(bad("timezone", "a time zone applies to cron only"));
                }
                if !(EVERY_MS_MIN..=EVERY_MS_MAX).contains(&every) {
                    return Err(bad(
                        "every_ms",
                        format!("{every} is out of range ({EVERY_MS_MIN} to {EVERY_MS_MAX})"),
                    ));
                }
                When::Every {
                    every_ms: every as i64,
                    anchor_ms: self.start_at.map_or(anchor_ms, Timestamp::as_millis),
                }
            }
        };
        if self.jitter_ms > JITTER_MS_MAX {
            return Err(bad("jitter_ms", "jitter is at most one day (86400000 ms)"));
        }
        if let Some(max) = self.catch_up_max
            && !(1..=CATCH_UP_MAX_LIMIT).contains(&max)
        {
            return Err(bad(
                "catch_up_max",
                format!("{max} is out of range (1 to 1000)"),
            ));
        }
        if self.task.priority > 10 {
            return Err(bad("task.priority", "priority is 0 to 10"));
        }
        if self
            .task
            .title
            .as_ref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(bad("task.title", "a title must not be empty"));
        }
        for (field, at) in [("start_at", self.start_at), ("end_at", self.end_at)] {
            if let Some(t) = at
                && !(TIME_MS_MIN..=TIME_MS_MAX).contains(&t.as_millis())
            {
                return Err(bad(field, "a time between the years 1 and 9999"));
            }
        }
        let start_ms = self.start_at.map_or(i64::MIN, Timestamp::as_millis);
        let end_ms = self.end_at.map_or(i64::MAX, Timestamp::as_millis);
        if start_ms > end_ms {
            return Err(bad("end_at", "end_at is before start_at"));
        }
        Ok(Compiled {
            spec: self.clone(),
            when,
            start_ms,
            end_ms,
        })
    }

    /// How many missed firings the catch-up policy lets run.
    pub fn catch_up_limit(&self) -> usize {
        match self.catch_up {
            CatchUp::All => self.catch_up_max.unwrap_or(10) as usize,
            CatchUp::None | CatchUp::Latest => 1,
        }
    }
}

impl Compiled {
    /// The definition.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The first fire time strictly after `t`, within the start and end dates.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let from = t.max(self.start_ms.saturating_sub(1));
        let next = match &self.when {
            When::Cron(cron, tz) => {
                let at = tz.timestamp_millis_opt(from).single()?;
                // Whole seconds: a cron time is never between two seconds.
                let n = cron.find_next_occurrence(&at, false).ok()?;
                n.timestamp_millis()
            }
            When::Every {
                every_ms,
                anchor_ms,
            } => {
                if from < *anchor_ms {
                    *anchor_ms
                } else {
                    let k = from.checked_sub(*anchor_ms)?.div_euclid(*every_ms) + 1;
                    anchor_ms.checked_add(k.checked_mul(*every_ms)?)?
                }
            }
        };
        (next <= self.end_ms).then_some(next)
    }

    /// The last fire time at or before `t`, within the start and end dates.
    pub fn prev_at_or_before(&self, t: i64) -> Option<i64> {
        let to = t.min(self.end_ms);
        let prev = match &self.when {
            When::Cron(cron, tz) => {
                // Round down to a whole second: croner searches by seconds.
                let at = tz
                    .timestamp_millis_opt(to.div_euclid(1000).checked_mul(1000)?)
                    .single()?;
                cron.find_previous_occurrence(&at, true)
                    .ok()?
                    .timestamp_millis()
            }
            When::Every {
                every_ms,
                anchor_ms,
            } => {
                if to < *anchor_ms {
                    return None;
                }
                let k = to.checked_sub(*anchor_ms)?.div_euclid(*every_ms);
                anchor_ms.checked_add(k.checked_mul(*every_ms)?)?
            }
        };
        (prev >= self.start_ms).then_some(prev)
    }

    /// The fire times in `(after, now]` that the catch-up policy lets run, oldest first; the
    /// newest fire time in that range (fired or not): the schedule's new high-water mark; and
    /// how many of those looked at the policy dropped (firings beyond the catch-up limit are
    /// not even looked at, so not counted).
    pub fn due(&self, after: i64, now: i64) -> (Vec<i64>, Option<i64>, u64) {
        let limit = self.spec.catch_up_limit();
        let mut due = Vec::new();
        let mut cursor = now;
        while due.len() < limit {
            match self.prev_at_or_before(cursor) {
                Some(p) if p > after => {
                    due.push(p);
                    cursor = p - 1;
                }
                _ => break,
            }
        }
        let newest = due.first().copied();
        due.reverse();
        let looked_at = due.len();
        if self.spec.catch_up == CatchUp::None {
            due.retain(|t| now - t <= ON_TIME_GRACE_MS);
        }
        let dropped = (looked_at - due.len()) as u64;
        (due, newest, dropped)
    }

    /// The delay added to the run for fire time `t`: derived from the name and `t` (FNV-1a),
    /// so that every process computes the same one.
    pub fn jitter_for(&self, t: i64) -> i64 {
        if self.spec.jitter_ms == 0 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.spec.name.bytes().chain(t.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.spec.jitter_ms) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any definition text gives Ok or Err, and any time gives Some or None: never a panic.
    #[test]
    fn arbitrary_cron_texts_and_times_never_panic() {
        let mut rng = fastrand::Rng::with_seed(18);
        let alphabet: Vec<char> = "0123456789*/,-? LW#abcMONJANxyz\u{e9}".chars().collect();
        let times = [
            i64::MIN,
            i64::MIN + 1,
            -62_135_596_800_000,
            -1,
            0,
            1_800_000_000_000,
            253_402_300_799_999,
            i64::MAX - 1,
            i64::MAX,
        ];
        for _ in 0..3_000 {
            let len = rng.usize(0..24);
            let mut text = String::new();
            for _ in 0..len {
                text.extend(rng.choice(alphabet.iter()));
            }
            let spec = ScheduleSpec {
                name: "f".into(),
                cron: Some(text),
                timezone: rng
                    .choice(["UTC", "Europe/Berlin", "Pacific/Chatham"])
                    .map(str::to_string),
                ..ScheduleSpec::default()
            };
            if let Ok(c) = spec.compile(0) {
                for t in times {
                    let _ = c.next_after(t);
                    let _ = c.prev_at_or_before(t);
                }
                let _ = c.due(0, 1_800_000_000_000);
            }
        }
        for expr in [
            "* * * * *",
            "0 9 * * 1-5",
            "0 12 29 2 *",
            "*/7 * * * * *",
            "0 0 31 2 *",
        ] {
            let spec = ScheduleSpec {
                name: "f".into(),
                cron: Some(expr.into()),
                timezone: Some("Europe/Berlin".into()),
                ..ScheduleSpec::default()
            };
            let c = spec.compile(0).expect("valid");
            for t in times {
                let _ = c.next_after(t);
                let _ = c.prev_at_or_before(t);
            }
        }
        for every in [EVERY_MS_MIN, 1_000, EVERY_MS_MAX] {
            for anchor in times {
                let spec = ScheduleSpec {
                    name: "f".into(),
                    every_ms: Some(every),
                    ..ScheduleSpec::default()
                };
                let c = spec.compile(anchor).expect("valid");
                for t in times {
                    let _ = c.next_after(t);
                    let _ = c.prev_at_or_before(t);
                    let _ = c.due(t, t);
                }
            }
        }
    }
}
