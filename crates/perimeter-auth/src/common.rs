//! The shipped list of commonly used passwords (see `data/README.md` for its sources).

use std::sync::LazyLock;

/// One password per line: NFC-normalised, lower-cased, 12 to 128 characters, sorted.
static LIST: &str = include_str!("../data/common-passwords.txt");

static SORTED: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut lines: Vec<&'static str> = LIST.lines().filter(|l| !l.is_empty()).collect();
    // The file is sorted when generated; sorting again costs little and keeps the lookup
    // correct even if someone edits the file by hand.
    lines.sort_unstable();
    lines.dedup();
    lines
});

/// Whether `normalized` (NFC, any case) is on the list, compared case-insensitively.
pub(crate) fn is_common(normalized: &str) -> bool {
    let lower = normalized.to_lowercase();
    SORTED.binary_search(&lower.as_str()).is_ok()
}

/// How many passwords the list holds.
pub fn common_password_count() -> usize {
    SORTED.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_loaded_sorted_and_long_entries_only() {
        assert!(common_password_count() > 40_000);
        assert!(LIST.lines().all(|l| l.chars().count() >= 12));
        let lines: Vec<&str> = LIST.lines().collect();
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "data file must stay sorted"
        );
    }

    #[test]
    fn known_entries_are_found_in_any_case() {
        assert!(is_common("password1234"));
        assert!(is_common("PASSWORD1234"));
        assert!(is_common("qwertyuiopasdfghjkl") || is_common("1qaz2wsx3edc"));
        assert!(!is_common("correct horse battery staple perimeter"));
    }
}
