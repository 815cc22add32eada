//! Cron expressions: when a schedule fires, in UTC.
//!
//! Five fields (`minute hour day-of-month month day-of-week`) as crontab(5) has them,
//! or six with seconds first, for schedules shorter than a minute. Each field is `*`,
//! a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those. As in cron,
//! when both day fields are restricted a day matching either one fires.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc};

use crate::error::{Error, Result};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: Field,
    minutes: Field,
    hours: Field,
    days: Field,
    months: Field,
    weekdays: Field,
}

/// The values one field allows, as a bit set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    allowed: u64,
    /// Written as `*`: for the day fields, "any" rather than a restriction.
    any: bool,
}

impl Field {
    fn parse(text: &str, name: &str, min: u32, max: u32) -> Result<Field> {
        let bad = |why: String| Error::Cron {
            expression: text.to_owned(),
            why: format!("{name}: {why}"),
        };
        let mut allowed = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step
                        .parse()
                        .map_err(|_| bad(format!("{step:?} is not a step")))?;
                    if step == 0 {
                        return Err(bad("a step of 0".to_owned()));
                    }
                    (range, step)
                }
                None => (part, 1),
            };
            let number = |value: &str| -> Result<u32> {
                let n: u32 = value
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not a number")))?;
                // Sunday is 0 and, as many crons allow, 7.
                let n = if name == "day of week" && n == 7 {
                    0
                } else {
                    n
                };
                if n < min || n > max {
                    return Err(bad(format!("{n} is outside {min}-{max}")));
                }
                Ok(n)
            };
            let (from, to) = match range {
                "*" => (min, max),
                _ => match range.split_once('-') {
                    Some((from, to)) => (number(from)?, number(to)?),
                    None if step > 1 => (number(range)?, max),
                    None => {
                        let n = number(range)?;
                        (n, n)
                    }
                },
            };
            if from > to {
                return Err(bad(format!("the range {range} runs backwards")));
            }
            for value in (from..=to).step_by(step as usize) {
                allowed |= 1 << value;
            }
        }
        Ok(Field {
            allowed,
            any: text == "*",
        })
    }

    fn every(min: u32, max: u32) -> Field {
        Field {
            allowed: (min..=max).fold(0, |bits, value| bits | 1 << value),
            any: true,
        }
    }

    fn allows(&self, value: u32) -> bool {
        self.allowed & (1 << value) != 0
    }
}

impl FromStr for Cron {
    type Err = Error;

    fn from_str(text: &str) -> Result<Cron> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => (Field::parse("0", "second", 0, 59)?, &fields[..]),
            6 => (Field::parse(fields[0], "second", 0, 59)?, &fields[1..]),
            n => {
                return Err(Error::Cron {
                    expression: text.to_owned(),
                    why: format!(
                        "{n} fields; a cron expression has 5 (minute hour day month weekday) \
                         or 6 (with seconds first)"
                    ),
                });
            }
        };
        let field = |index: usize, name: &str, min: u32, max: u32| {
            Field::parse(rest[index], name, min, max).map_err(|error| match error {
                Error::Cron { why, .. } => Error::Cron {
                    expression: text.to_owned(),
                    why,
                },
                other => other,
            })
        };
        Ok(Cron {
            text: fields.join(" "),
            seconds,
            minutes: field(0, "minute", 0, 59)?,
            hours: field(1, "hour", 0, 23)?,
            days: field(2, "day of month", 1, 31)?,
            months: field(3, "month", 1, 12)?,
            weekdays: field(4, "day of week", 0, 6)?,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How far ahead a fire time is looked for: every expression that parses fires within
/// this (29 February plus a weekday comes round within 28 years).
const HORIZON_DAYS: i64 = 366 * 28;

impl Cron {
    /// Every second: for tests of the orchestrator.
    pub fn every_second() -> Cron {
        Cron {
            text: "* * * * * *".to_owned(),
            seconds: Field::every(0, 59),
            minutes: Field::every(0, 59),
            hours: Field::every(0, 23),
            days: Field::every(1, 31),
            months: Field::every(1, 12),
            weekdays: Field::every(0, 6),
        }
    }

    fn day_matches(&self, time: &DateTime<Utc>) -> bool {
        let day = self.days.allows(time.day());
        let weekday = self.weekdays.allows(time.weekday().num_days_from_sunday());
        match (self.days.any, self.weekdays.any) {
            (false, false) => day || weekday,
            _ => day && weekday,
        }
    }

    /// The first time strictly after `after` that the expression fires; none for an
    /// expression that never does (30 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.duration_trunc(Duration::seconds(1)).ok()? + Duration::seconds(1);
        let end = start + Duration::days(HORIZON_DAYS);
        let mut time = start;
        while time < end {
            if !self.months.allows(time.month()) {
                let (year, month) = if time.month() == 12 {
                    (time.year() + 1, 1)
                } else {
                    (time.year(), time.month() + 1)
                };
                time = time
                    .with_day(1)?
                    .with_year(year)?
                    .with_month(month)?
                    .duration_trunc(Duration::days(1))
                    .ok()?;
                continue;
            }
            if !self.day_matches(&time) {
                time = time.duration_trunc(Duration::days(1)).ok()? + Duration::days(1);
                continue;
            }
            if !self.hours.allows(time.hour()) {
                time = time.duration_trunc(Duration::hours(1)).ok()? + Duration::hours(1);
                continue;
            }
            if !self.minutes.allows(time.minute()) {
                time = time.duration_trunc(Duration::minutes(1)).ok()? + Duration::minutes(1);
                continue;
            }
            if !self.seconds.allows(time.second()) {
                time += Duration::seconds(1);
                continue;
            }
            return Some(time);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(expression: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        expression
            .parse::<Cron>()
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn steps_ranges_and_lists_fire_when_crontab_says() {
        let now = at(2026, 12, 2, 9, 7, 30);
        assert_eq!(next("*/15 * * * *", now), at(2026, 12, 2, 9, 15, 0));
        assert_eq!(next("0 9-17 * * *", now), at(2026, 12, 2, 10, 0, 0));
        assert_eq!(next("5,10 0 * * *", now), at(2026, 12, 3, 0, 5, 0));
        assert_eq!(next("*/5 * * * * *", now), at(2026, 12, 2, 9, 7, 35));
        assert_eq!(next("0 0 1 * *", now), at(2027, 1, 1, 0, 0, 0));
        // 2 December 2026 is a Wednesday; the next Monday is the 7th.
        assert_eq!(next("30 6 * * 1", now), at(2026, 12, 7, 6, 30, 0));
        assert_eq!(next("0 0 * * 7", now), at(2026, 12, 6, 0, 0, 0));
    }

    #[test]
    fn both_day_fields_restricted_fire_on_either() {
        // The 15th, or any Monday: Monday the 7th comes first.
        let now = at(2026, 12, 2, 9, 0, 0);
        assert_eq!(next("0 0 15 * 1", now), at(2026, 12, 7, 0, 0, 0));
    }

    #[test]
    fn a_fire_time_is_strictly_after() {
        let now = at(2026, 12, 2, 9, 15, 0);
        assert_eq!(next("*/15 * * * *", now), at(2026, 12, 2, 9, 30, 0));
        assert_eq!(next("0 0 29 2 *", now), at(2028, 2, 29, 0, 0, 0));
    }

    #[test]
    fn an_impossible_date_never_fires() {
        let cron: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(cron.next_after(at(2026, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn malformed_expressions_say_which_field_is_wrong() {
        for (expression, says) in [
            ("* * * *", "4 fields"),
            ("61 * * * *", "minute: 61 is outside 0-59"),
            ("* 24 * * *", "hour: 24 is outside 0-23"),
            ("* * 0 * *", "day of month: 0 is outside 1-31"),
            ("*/0 * * * *", "minute: a step of 0"),
            ("* * * * mon", "day of week: \"mon\" is not a number"),
            ("10-5 * * * *", "minute: the range 10-5 runs backwards"),
        ] {
            let error = expression.parse::<Cron>().unwrap_err().to_string();
            assert!(error.contains(says), "{expression}: {error}");
        }
    }
}
