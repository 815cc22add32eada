//! What a landing source does with bad rows, as its `OPTIONS` say: the option names,
//! their defaults, and the decision for a file once its rows are counted.

use serde::{Deserialize, Serialize};

/// `OPTIONS ('bad_rows' '…')`: what a bad row does.
pub const ON_BAD_ROW: &str = "bad_rows";
/// `OPTIONS ('bad_rows.limit' '…')`: a count (`100`) or a share (`5%`) of a file's rows.
pub const LIMIT: &str = "bad_rows.limit";
/// `OPTIONS ('bad_rows.max_row_bytes' '…')`: longer rows are bad rows.
pub const MAX_ROW_BYTES: &str = "bad_rows.max_row_bytes";

/// The options this module owns; a landing source passes the others to its format.
pub const OPTION_NAMES: [&str; 3] = [ON_BAD_ROW, LIMIT, MAX_ROW_BYTES];

/// A row longer than this is bad unless the source says otherwise (DuckDB's default is
/// 2 MB, Spark's is unlimited; 8 MiB keeps a runaway quote from filling memory).
pub const DEFAULT_MAX_ROW_BYTES: u64 = 8 * 1024 * 1024;

/// The share of a file's rows past which it is a broken delivery, rejected whole.
pub const DEFAULT_LIMIT: Limit = Limit::Share(0.10);

/// What a bad row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnBadRow {
    /// Set it aside in the rejects table and ingest the file's good rows (the default).
    Reject,
    /// Reject its whole file, and make the run's exit status say so.
    FailFile,
    /// Fail the table's build: nothing of it is committed.
    FailRun,
}

/// How many bad rows a file may have before it is rejected whole.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Limit {
    Rows(u64),
    /// A fraction of the file's rows, from 0 to 1.
    Share(f64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Rows(rows) => write!(f, "{rows} rows"),
            Limit::Share(share) => write!(f, "{}%", share * 100.0),
        }
    }
}

/// A landing source's bad-row policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BadRowPolicy {
    pub on_bad_row: OnBadRow,
    pub limit: Limit,
    pub max_row_bytes: u64,
}

impl Default for BadRowPolicy {
    fn default() -> Self {
        Self {
            on_bad_row: OnBadRow::Reject,
            limit: DEFAULT_LIMIT,
            max_row_bytes: DEFAULT_MAX_ROW_BYTES,
        }
    }
}

/// What a file's count of bad rows decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ingest the good rows; the bad ones go to the rejects table.
    Ingest,
    /// Reject the whole file, for this reason.
    RejectFile(String),
}

impl BadRowPolicy {
    /// Reads the policy from a source's options (names compared without case); an
    /// unknown value is an error that says what is allowed.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        BadRowPolicy::default().with_options(options)
    }

    /// The policy of a stream source: bad messages are set aside one by one with no
    /// limit unless one is set, since a stream has no file to reject whole.
    pub fn for_streams<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        BadRowPolicy {
            limit: Limit::Share(1.0),
            ..BadRowPolicy::default()
        }
        .with_options(options)
    }

    /// This policy with the options given changed.
    fn with_options<'a>(
        self,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut policy = self;
        for (key, value) in options {
            let value = value.trim();
            match key.to_ascii_lowercase().as_str() {
                ON_BAD_ROW => {
                    policy.on_bad_row = match value.to_ascii_lowercase().as_str() {
                        "reject" => OnBadRow::Reject,
                        "fail_file" => OnBadRow::FailFile,
                        "fail_run" => OnBadRow::FailRun,
                        _ => {
                            return Err(format!(
                                "'{ON_BAD_ROW}' is '{value}'; it must be 'reject', 'fail_file' or 'fail_run'"
                            ));
                        }
                    }
                }
                LIMIT => policy.limit = parse_limit(value)?,
                MAX_ROW_BYTES => policy.max_row_bytes = value
                    .parse()
                    .ok()
                    .filter(|bytes| *bytes > 0)
                    .ok_or_else(|| {
                        format!(
                            "'{MAX_ROW_BYTES}' is '{value}'; it must be a number of bytes above 0"
                        )
                    })?,
                _ => {}
            }
        }
        Ok(policy)
    }

    /// Whether a file of `rows` rows, `bad` of them bad, is ingested or rejected whole.
    /// A count limit can also be applied part way, with the rows read so far.
    pub fn verdict(&self, bad: u64, rows: u64) -> Verdict {
        let over = match self.limit {
            Limit::Rows(limit) => bad > limit,
            Limit::Share(share) => rows > 0 && bad as f64 > share * rows as f64,
        };
        if over {
            Verdict::RejectFile(format!(
                "{bad} of {rows} rows are bad, over the limit of {} ('{LIMIT}')",
                self.limit
            ))
        } else {
            Verdict::Ingest
        }
    }
}

fn parse_limit(value: &str) -> Result<Limit, String> {
    let invalid = || {
        format!(
            "'{LIMIT}' is '{value}'; it must be a count of rows (100) or a share of a file's rows (5%)"
        )
    };
    match value.strip_suffix('%') {
        Some(percent) => {
            let percent: f64 = percent.trim().parse().map_err(|_| invalid())?;
            if (0.0..=100.0).contains(&percent) {
                Ok(Limit::Share(percent / 100.0))
            } else {
                Err(invalid())
            }
        }
        None => value.parse().map(Limit::Rows).map_err(|_| invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_set_the_policy_and_bad_values_say_what_is_allowed() {
        let policy = BadRowPolicy::from_options([
            ("BAD_ROWS", "fail_file"),
            ("bad_rows.limit", "2.5%"),
            ("bad_rows.max_row_bytes", "1024"),
            ("format.has_header", "true"),
        ])
        .unwrap();
        assert_eq!(policy.on_bad_row, OnBadRow::FailFile);
        assert_eq!(policy.limit, Limit::Share(0.025));
        assert_eq!(policy.max_row_bytes, 1024);
        assert_eq!(
            BadRowPolicy::from_options([]).unwrap(),
            BadRowPolicy::default()
        );

        let error = BadRowPolicy::from_options([("bad_rows", "skip")]).unwrap_err();
        assert!(
            error.contains("'reject', 'fail_file' or 'fail_run'"),
            "{error}"
        );
        for limit in ["lots", "120%", "-1"] {
            let error = BadRowPolicy::from_options([("bad_rows.limit", limit)]).unwrap_err();
            assert!(error.contains("a count of rows"), "{limit}: {error}");
        }
        assert!(BadRowPolicy::from_options([("bad_rows.max_row_bytes", "0")]).is_err());
    }

    #[test]
    fn a_file_past_its_limit_is_rejected_whole() {
        let share = BadRowPolicy::default();
        assert_eq!(share.verdict(10, 100), Verdict::Ingest);
        let Verdict::RejectFile(reason) = share.verdict(11, 100) else {
            panic!("11% is over 10%")
        };
        assert!(
            reason.contains("11 of 100 rows are bad, over the limit of 10%"),
            "{reason}"
        );
        let count = BadRowPolicy {
            limit: Limit::Rows(2),
            ..BadRowPolicy::default()
        };
        assert_eq!(count.verdict(2, 3), Verdict::Ingest);
        assert!(matches!(
            count.verdict(3, 1_000_000),
            Verdict::RejectFile(_)
        ));
        assert_eq!(
            share.verdict(0, 0),
            Verdict::Ingest,
            "an empty file is fine"
        );
    }
}
