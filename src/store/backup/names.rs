//! The names of rotated backups, and their order.
//!
//! A rotated backup is named `backup-<UTC time to the millisecond>`, with `-<n>` appended when
//! that name is taken. The rotation keeps the newest backups by this order, so names must grow
//! with every backup taken: a name that sorted before an older backup (a clock stepped back, or
//! `-10` sorting before `-9` as text) would get the backup just taken removed as "oldest".

use std::cmp::Ordering;

use super::ROTATED_PREFIX;

/// The length of the time in a rotated backup's name (`20261205T010203.456Z`).
const STAMP_LEN: usize = 20;

/// A name a rotation made, split into what orders it: the name up to its time, and its
/// collision number (0 when it has none). `None` for another name (a directory or file
/// someone put there by hand).
fn rotation_key(name: &str) -> Option<(&str, u64)> {
    let stem_len = ROTATED_PREFIX.len() + STAMP_LEN;
    let stem = name.get(..stem_len)?;
    if !stem.starts_with(ROTATED_PREFIX) || !stem.ends_with('Z') {
        return None;
    }
    match &name[stem_len..] {
        "" => Some((stem, 0)),
        rest => Some((stem, rest.strip_prefix('-')?.parse::<u64>().ok()?)),
    }
}

/// What orders a name: a rotation's by time then number, any other name as text.
fn order_key(name: &str) -> (&str, u64) {
    rotation_key(name).unwrap_or((name, 0))
}

/// Rotated backup names in the order they were taken, oldest first.
pub(super) fn compare(a: &str, b: &str) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// The name for a backup taken at `stamp` (the UTC time as the rotation formats it) in a
/// directory whose entries starting with the prefix are `taken`: the prefixed time if it sorts
/// after every name a rotation made there, else the newest one's time with the next collision number, so a
/// clock stepped back still names the new backup last.
pub(super) fn next(stamp: &str, taken: &[String]) -> String {
    let name = format!("{ROTATED_PREFIX}{stamp}");
    let Some((newest_stem, newest_n)) = taken.iter().filter_map(|t| rotation_key(t)).max() else {
        return name;
    };
    if name.as_str() > newest_stem {
        return name;
    }
    format!("{newest_stem}-{}", newest_n.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "20261205T010203.456Z";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter()
            .map(|s| format!("{ROTATED_PREFIX}{s}"))
            .collect()
    }

    #[test]
    fn a_free_time_is_the_name() {
        assert_eq!(next(T, &[]), format!("{ROTATED_PREFIX}{T}"));
        let older = names(&["20261205T010203.455Z", "20261205T010203.455Z-3"]);
        assert_eq!(next(T, &older), format!("{ROTATED_PREFIX}{T}"));
    }

    /// Two backups in one millisecond: the second gets `-1`, the third `-2`, and so on, each
    /// sorting after the one before (as numbers: `-10` after `-9`).
    #[test]
    fn a_taken_time_gets_the_next_number_and_sorts_last() {
        let mut taken = Vec::new();
        for expected_n in 0..12u64 {
            let name = next(T, &taken);
            let wanted = match expected_n {
                0 => format!("{ROTATED_PREFIX}{T}"),
                n => format!("{ROTATED_PREFIX}{T}-{n}"),
            };
            assert_eq!(name, wanted);
            assert!(!taken.contains(&name), "{name} is taken");
            for t in &taken {
                assert_eq!(compare(t, &name), Ordering::Less, "{t} before {name}");
            }
            taken.push(name);
        }
    }

    /// A clock stepped back: the new backup takes the newest one's time and the next number,
    /// so the rotation still keeps it as the newest.
    #[test]
    fn a_clock_behind_the_newest_backup_still_names_the_new_one_last() {
        let taken = names(&["20261205T010203.456Z", "29991231T235959.999Z-4"]);
        let name = next("20200101T000000.000Z", &taken);
        assert_eq!(name, format!("{ROTATED_PREFIX}29991231T235959.999Z-5"));
        let taken = names(&["29991231T235959.999Z"]);
        assert_eq!(
            next("20200101T000000.000Z", &taken),
            format!("{ROTATED_PREFIX}29991231T235959.999Z-1")
        );
    }

    /// Names a rotation did not make are never taken as the newest backup (a file
    /// `backup-notes.txt` sorts after every time as text) and order as text.
    #[test]
    fn names_not_made_by_a_rotation_are_not_the_newest() {
        let taken = names(&["notes.txt", "mine-2", "20261205T010203.455Z", "-1"]);
        assert_eq!(next(T, &taken), format!("{ROTATED_PREFIX}{T}"));
        assert_eq!(compare("backup-mine", "backup-mine-2"), Ordering::Less);
        assert_eq!(rotation_key("backup-20261205T010203.456Z-x"), None);
        assert_eq!(rotation_key("backup-20261205T010203.456Z1"), None);
        // As long as a rotation's name, but no time in it: a name someone gave by hand, which
        // sorts after every time as text and must not set the next backup's name.
        let by_hand = format!("{ROTATED_PREFIX}{}", "z".repeat(STAMP_LEN));
        assert_eq!(rotation_key(&by_hand), None);
        assert_eq!(next(T, &[by_hand]), format!("{ROTATED_PREFIX}{T}"));
        assert_eq!(
            rotation_key("backup-20261205T010203.456Z-7"),
            Some(("backup-20261205T010203.456Z", 7))
        );
    }
}
