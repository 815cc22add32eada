//! Which offsets one build reads of each partition: from the position the table's last
//! commit recorded (or the starting offset, for a partition never read) up to the high
//! watermark, at most `max_messages_per_partition` each. The ends become the positions
//! the build's commit records, so a build killed before it commits reads the same range
//! again and one that committed never reads it twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{KafkaError, Result};
use crate::options::{KafkaOptions, OnDataLoss, StartingOffsets};

/// A partition's oldest offset and the offset after its newest message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// The offsets of one partition a build reads: `start` up to, not including, `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Messages deleted before Strata read them, skipped as `'on_data_loss' 'skip'` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// What one build reads, and where every partition stands after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The ranges with messages in them, in partition order.
    pub ranges: Vec<PartitionRange>,
    /// The next offset of every partition after this build, for its commit; a partition
    /// seen for the first time is here even when there is nothing to read yet.
    pub positions: Vec<(i32, i64)>,
    pub lost: Vec<Lost>,
    /// The partitions with messages left for later builds (the bound cut their ranges
    /// short), in partition order.
    pub behind: Vec<Behind>,
}

/// A partition a build leaves messages in: `next` is the first it leaves unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    pub partition: i32,
    pub next: i64,
    pub messages: i64,
}

impl Plan {
    /// Whether the commit would change nothing: no message to read, no new position.
    pub fn is_empty(&self, committed: &BTreeMap<i32, i64>) -> bool {
        self.ranges.is_empty()
            && self.lost.is_empty()
            && self
                .positions
                .iter()
                .all(|(partition, next)| committed.get(partition) == Some(next))
    }

    pub fn messages_lost(&self) -> i64 {
        self.lost.iter().map(|lost| lost.to - lost.from).sum()
    }

    /// Messages left for later builds, in every partition.
    pub fn lag(&self) -> i64 {
        self.behind.iter().map(|behind| behind.messages).sum()
    }
}

/// The plan of one build of `topic` from the committed positions (partition → next
/// offset) and the partitions' watermarks now.
pub fn plan(
    topic: &str,
    committed: &BTreeMap<i32, i64>,
    marks: &[Watermarks],
    options: &KafkaOptions,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let cap = i64::try_from(options.max_messages).unwrap_or(i64::MAX);
    for mark in marks {
        let partition = mark.partition;
        let mut start = match committed.get(&partition) {
            Some(next) => *next,
            None => match options.starting {
                StartingOffsets::Earliest => mark.low,
                StartingOffsets::Latest => mark.high,
            },
        };
        if start < mark.low {
            let lost = Lost {
                partition,
                from: start,
                to: mark.low,
            };
            match options.on_data_loss {
                OnDataLoss::Fail => {
                    return Err(KafkaError::DataLoss {
                        topic: topic.to_owned(),
                        partition,
                        next: start,
                        earliest: mark.low,
                        lost: mark.low - start,
                    });
                }
                OnDataLoss::Skip => plan.lost.push(lost),
            }
            start = mark.low;
        } else if start > mark.high {
            match options.on_data_loss {
                OnDataLoss::Fail => {
                    return Err(KafkaError::OffsetAhead {
                        topic: topic.to_owned(),
                        partition,
                        next: start,
                        latest: mark.high,
                    });
                }
                OnDataLoss::Skip => start = mark.low,
            }
        }
        let end = mark.high.min(start.saturating_add(cap));
        if end > start {
            plan.ranges.push(PartitionRange {
                partition,
                start,
                end,
            });
        }
        if mark.high > end {
            plan.behind.push(Behind {
                partition,
                next: end,
                messages: mark.high - end,
            });
        }
        plan.positions.push((partition, end));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> KafkaOptions {
        KafkaOptions::from_options(pairs.iter().copied()).unwrap()
    }

    fn marks(list: &[(i32, i64, i64)]) -> Vec<Watermarks> {
        list.iter()
            .map(|&(partition, low, high)| Watermarks {
                partition,
                low,
                high,
            })
            .collect()
    }

    #[test]
    fn a_build_reads_from_the_committed_positions_to_a_bounded_end() {
        let committed = BTreeMap::from([(0, 5)]);
        let watermarks = marks(&[(0, 0, 20), (1, 3, 8), (2, 0, 0)]);
        let plan = plan(
            "t",
            &committed,
            &watermarks,
            &options(&[("max_messages_per_partition", "10")]),
        )
        .unwrap();
        assert_eq!(
            plan.ranges,
            [
                PartitionRange {
                    partition: 0,
                    start: 5,
                    end: 15
                },
                PartitionRange {
                    partition: 1,
                    start: 3,
                    end: 8
                },
            ]
        );
        assert_eq!(
            plan.positions,
            [(0, 15), (1, 8), (2, 0)],
            "a new partition is recorded"
        );
        assert_eq!(
            plan.behind,
            [Behind {
                partition: 0,
                next: 15,
                messages: 5
            }]
        );
        assert_eq!(plan.lag(), 5);
        assert!(!plan.is_empty(&committed));
        let read_all = BTreeMap::from([(0, 20), (1, 8), (2, 0)]);
        let again = super::plan("t", &read_all, &watermarks, &options(&[])).unwrap();
        assert!(again.is_empty(&read_all), "{again:?}");
    }

    #[test]
    fn latest_starts_new_partitions_at_their_end() {
        let plan = plan(
            "t",
            &BTreeMap::new(),
            &marks(&[(0, 0, 20)]),
            &options(&[("starting_offsets", "latest")]),
        )
        .unwrap();
        assert!(plan.ranges.is_empty());
        assert_eq!(plan.positions, [(0, 20)]);
    }

    #[test]
    fn deleted_messages_fail_the_build_unless_skipping_is_allowed() {
        let committed = BTreeMap::from([(0, 5)]);
        let watermarks = marks(&[(0, 12, 20)]);
        let error = plan("t", &committed, &watermarks, &options(&[])).unwrap_err();
        assert!(
            matches!(error, KafkaError::DataLoss { lost: 7, .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("'on_data_loss' 'skip'"),
            "{error}"
        );
        let skipped = plan(
            "t",
            &committed,
            &watermarks,
            &options(&[("on_data_loss", "skip")]),
        )
        .unwrap();
        assert_eq!(skipped.messages_lost(), 7);
        assert_eq!(
            skipped.ranges,
            [PartitionRange {
                partition: 0,
                start: 12,
                end: 20
            }]
        );

        let recreated = marks(&[(0, 0, 3)]);
        let error = plan("t", &committed, &recreated, &options(&[])).unwrap_err();
        assert!(matches!(error, KafkaError::OffsetAhead { .. }), "{error}");
        let again = plan(
            "t",
            &committed,
            &recreated,
            &options(&[("on_data_loss", "skip")]),
        )
        .unwrap();
        assert_eq!(
            again.ranges,
            [PartitionRange {
                partition: 0,
                start: 0,
                end: 3
            }]
        );
    }
}
