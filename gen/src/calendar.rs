//! Timestamps as text without a clock or a date library: the data is pinned in time.

/// Seconds since the epoch of 2026-11-21T00:00:00Z, the day the example data ends.
pub(crate) const END: i64 = 1_795_219_200;

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Hinnant's civil-from-days).
pub(crate) fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM-DDTHH:MM:SS` of seconds since the epoch.
pub(crate) fn timestamp(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}",
        date(days),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(timestamp(END), "2026-11-21T00:00:00");
        assert_eq!(timestamp(951_782_400 + 86_399), "2000-02-29T23:59:59");
        assert_eq!(date(-1), "1969-12-31");
    }
}
