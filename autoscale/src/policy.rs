//! When to add executors and which one to drain: a pure function from a snapshot of
//! the cluster (and what the policy remembered last time) to a decision, so every
//! rule is tested with tables of cases and no clock or cluster.

use std::collections::BTreeMap;
use std::time::Duration;

/// The autoscaler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Never fewer executors than this (starting ones count).
    pub min: usize,
    /// Never more executors than this (starting ones count).
    pub max: usize,
    /// Tasks each slot should have, running or waiting, before more executors are worth it.
    pub tasks_per_slot: f64,
    /// A backlog must last this long before executors are added, so short blips add none.
    pub scale_up_after: Duration,
    /// An executor must have run nothing for this long before it is drained.
    pub idle_timeout: Duration,
    /// Time after adding executors before adding or draining any, and after a drain
    /// before the next one; reaching `min` waits for nothing.
    pub cooldown: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min: 1,
            max: 8,
            tasks_per_slot: 1.0,
            scale_up_after: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            cooldown: Duration::from_secs(10),
        }
    }
}

impl Settings {
    /// Checks that the settings can be met, saying which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!(
                "the minimum ({}) is above the maximum ({})",
                self.min, self.max
            ));
        }
        if self.max == 0 {
            return Err("the maximum must be at least 1".into());
        }
        if !(self.tasks_per_slot.is_finite() && self.tasks_per_slot > 0.0) {
            return Err(format!(
                "tasks per slot must be above 0, not {}",
                self.tasks_per_slot
            ));
        }
        Ok(())
    }
}

/// One registered executor as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Executor {
    /// Ballista's executor id.
    pub id: String,
    /// Tasks it can run at once.
    pub slots: usize,
    /// Tasks running on it now.
    pub running_tasks: usize,
    /// Marked for removal: it gets no new tasks and is not capacity.
    pub draining: bool,
    /// A running job still needs shuffle output stored on it.
    pub holds_shuffle: bool,
}

/// What the cluster looks like at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Time since the autoscaler started (monotonic).
    pub now: Duration,
    /// Tasks ready to run that no executor has taken yet.
    pub pending_tasks: usize,
    /// Registered executors, draining ones included.
    pub executors: Vec<Executor>,
    /// Executors asked for that have not registered yet.
    pub starting: usize,
    /// Slots a new executor brings (the backend knows; used for starting ones).
    pub slots_per_executor: usize,
}

/// What the policy carries from one snapshot to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// When the current backlog began.
    pub backlog_since: Option<Duration>,
    /// Since when each idle executor has run nothing.
    pub idle_since: BTreeMap<String, Duration>,
    /// When executors were last added (reaching the minimum does not count).
    pub last_add: Option<Duration>,
    /// When an executor was last drained.
    pub last_drain: Option<Duration>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing.
    Hold,
    /// Ask the backend for `count` more executors.
    Add { count: usize, reason: String },
    /// Stop giving this executor tasks, then stop it once no running job needs it.
    Drain { executor: String, reason: String },
}

/// Decides from a snapshot and the memory of earlier ones; returns the new memory.
pub fn decide(settings: &Settings, memory: &Memory, snapshot: &Snapshot) -> (Decision, Memory) {
    let now = snapshot.now;
    let active: Vec<&Executor> = snapshot.executors.iter().filter(|e| !e.draining).collect();
    let count = active.len() + snapshot.starting;
    let slots_each = if active.is_empty() {
        snapshot.slots_per_executor.max(1)
    } else {
        (active.iter().map(|e| e.slots).sum::<usize>() / active.len()).max(1)
    };
    let capacity = active.iter().map(|e| e.slots).sum::<usize>() + snapshot.starting * slots_each;
    let running: usize = active.iter().map(|e| e.running_tasks).sum();
    let demand = snapshot.pending_tasks + running;
    let backlog =
        snapshot.pending_tasks > 0 && demand as f64 > capacity as f64 * settings.tasks_per_slot;

    let mut next = Memory {
        backlog_since: backlog.then(|| memory.backlog_since.unwrap_or(now)),
        idle_since: active
            .iter()
            .filter(|e| e.running_tasks == 0)
            .map(|e| {
                let since = memory.idle_since.get(&e.id).copied().unwrap_or(now);
                (e.id.clone(), since)
            })
            .collect(),
        last_add: memory.last_add,
        last_drain: memory.last_drain,
    };
    let cooled = |last: Option<Duration>| {
        last.is_none_or(|last| now.saturating_sub(last) >= settings.cooldown)
    };
    let may_add = cooled(memory.last_add);
    let may_drain = may_add && cooled(memory.last_drain);

    let decision = if count < settings.min {
        Decision::Add {
            count: settings.min - count,
            reason: format!("{count} executor(s), below the minimum of {}", settings.min),
        }
    } else if let Some(since) = next
        .backlog_since
        .filter(|_| may_add && count < settings.max)
    {
        let lasted = now.saturating_sub(since);
        let wanted =
            (demand as f64 / (slots_each as f64 * settings.tasks_per_slot)).ceil() as usize;
        let target = wanted.clamp(settings.min, settings.max);
        if lasted >= settings.scale_up_after && target > count {
            next.last_add = Some(now);
            Decision::Add {
                count: target - count,
                reason: format!(
                    "{} pending and {running} running task(s) on {capacity} slot(s) for {:.1} s",
                    snapshot.pending_tasks,
                    lasted.as_secs_f64()
                ),
            }
        } else {
            Decision::Hold
        }
    } else {
        let decision = scale_down(settings, &next, snapshot, &active, count, may_drain, demand);
        if matches!(decision, Decision::Drain { .. }) {
            next.last_drain = Some(now);
        }
        decision
    };
    (decision, next)
}

/// One idle executor to drain, if the rest can carry the work and nothing else is draining.
fn scale_down(
    settings: &Settings,
    next: &Memory,
    snapshot: &Snapshot,
    active: &[&Executor],
    count: usize,
    cooled: bool,
    demand: usize,
) -> Decision {
    let one_draining = snapshot.executors.iter().any(|e| e.draining);
    if snapshot.pending_tasks > 0
        || snapshot.starting > 0
        || count <= settings.min
        || one_draining
        || !cooled
    {
        return Decision::Hold;
    }
    let capacity: usize = active.iter().map(|e| e.slots).sum();
    let candidate = active
        .iter()
        .filter_map(|e| {
            let idle = snapshot.now.saturating_sub(*next.idle_since.get(&e.id)?);
            (idle >= settings.idle_timeout).then_some((e, idle))
        })
        .filter(|(e, _)| {
            demand as f64 <= capacity.saturating_sub(e.slots) as f64 * settings.tasks_per_slot
        })
        // Prefer an executor no job needs, then the one idle longest, then by id.
        .min_by(|(a, idle_a), (b, idle_b)| {
            (a.holds_shuffle, std::cmp::Reverse(*idle_a), &a.id).cmp(&(
                b.holds_shuffle,
                std::cmp::Reverse(*idle_b),
                &b.id,
            ))
        });
    match candidate {
        Some((executor, idle)) => Decision::Drain {
            executor: executor.id.clone(),
            reason: format!(
                "idle for {:.1} s; {count} executor(s), minimum {}",
                idle.as_secs_f64(),
                settings.min
            ),
        },
        None => Decision::Hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a step expects, without the human-readable reason.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Hold,
        Add(usize),
        Drain(&'static str),
    }

    /// A named sequence of snapshots, each with the decision it must give.
    type Case = (&'static str, Settings, Vec<(Snapshot, Expect)>);

    fn executor(id: &str, slots: usize, running_tasks: usize) -> Executor {
        Executor {
            id: id.into(),
            slots,
            running_tasks,
            draining: false,
            holds_shuffle: false,
        }
    }

    fn draining(mut e: Executor) -> Executor {
        e.draining = true;
        e
    }

    fn holding(mut e: Executor) -> Executor {
        e.holds_shuffle = true;
        e
    }

    fn at(seconds: f64, pending_tasks: usize, executors: Vec<Executor>) -> Snapshot {
        Snapshot {
            now: Duration::from_secs_f64(seconds),
            pending_tasks,
            executors,
            starting: 0,
            slots_per_executor: 2,
        }
    }

    fn starting(mut s: Snapshot, starting: usize) -> Snapshot {
        s.starting = starting;
        s
    }

    fn settings(min: usize, max: usize) -> Settings {
        Settings {
            min,
            max,
            tasks_per_slot: 1.0,
            scale_up_after: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            cooldown: Duration::from_secs(10),
        }
    }

    fn one(id: &str, running: usize) -> Vec<Executor> {
        vec![executor(id, 2, running)]
    }

    fn three_idle() -> Vec<Executor> {
        vec![
            executor("a", 2, 0),
            executor("b", 2, 0),
            executor("c", 2, 0),
        ]
    }

    #[test]
    fn decisions_follow_the_rules_step_by_step() {
        let cases: Vec<Case> = vec![
            (
                "a backlog that lasts scale_up_after adds what it needs at once",
                settings(1, 8),
                vec![
                    (at(0.0, 10, one("a", 2)), Expect::Hold),
                    (at(1.0, 10, one("a", 2)), Expect::Hold),
                    (at(2.0, 10, one("a", 2)), Expect::Add(5)),
                ],
            ),
            (
                "short blips change nothing: the backlog clock restarts when it clears",
                settings(1, 8),
                vec![
                    (at(0.0, 4, one("a", 2)), Expect::Hold),
                    (at(1.5, 4, one("a", 2)), Expect::Hold),
                    (at(1.9, 0, one("a", 2)), Expect::Hold),
                    (at(2.5, 4, one("a", 2)), Expect::Hold),
                    (at(4.0, 4, one("a", 2)), Expect::Hold),
                    (at(4.5, 4, one("a", 2)), Expect::Add(2)),
                ],
            ),
            (
                "pending tasks that fit the free slots are no backlog",
                settings(1, 8),
                vec![
                    (at(0.0, 1, one("a", 1)), Expect::Hold),
                    (at(5.0, 1, one("a", 1)), Expect::Hold),
                ],
            ),
            (
                "idle executors go one step at a time, after idle_timeout",
                settings(1, 8),
                vec![
                    (at(0.0, 0, three_idle()), Expect::Hold),
                    (at(59.0, 0, three_idle()), Expect::Hold),
                    (at(60.0, 0, three_idle()), Expect::Drain("a")),
                    (
                        at(
                            61.0,
                            0,
                            vec![
                                draining(executor("a", 2, 0)),
                                executor("b", 2, 0),
                                executor("c", 2, 0),
                            ],
                        ),
                        Expect::Hold,
                    ),
                    (
                        at(65.0, 0, vec![executor("b", 2, 0), executor("c", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(70.0, 0, vec![executor("b", 2, 0), executor("c", 2, 0)]),
                        Expect::Drain("b"),
                    ),
                    (at(200.0, 0, vec![executor("c", 2, 0)]), Expect::Hold),
                ],
            ),
            (
                "an executor that ran a task recently is not idle",
                settings(1, 8),
                vec![
                    (
                        at(0.0, 0, vec![executor("a", 2, 0), executor("b", 2, 1)]),
                        Expect::Hold,
                    ),
                    (
                        at(30.0, 0, vec![executor("a", 2, 1), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(61.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(90.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Drain("b"),
                    ),
                ],
            ),
            (
                "an executor whose shuffle output a job still needs is drained last",
                settings(1, 8),
                vec![
                    (
                        at(
                            0.0,
                            0,
                            vec![holding(executor("a", 2, 0)), executor("b", 2, 0)],
                        ),
                        Expect::Hold,
                    ),
                    (
                        at(
                            60.0,
                            0,
                            vec![holding(executor("a", 2, 0)), executor("b", 2, 0)],
                        ),
                        Expect::Drain("b"),
                    ),
                ],
            ),
            (
                "no drain while tasks wait or executors are starting",
                settings(1, 8),
                vec![
                    (
                        at(0.0, 0, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        at(60.0, 1, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        starting(
                            at(61.0, 0, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                            1,
                        ),
                        Expect::Hold,
                    ),
                    (
                        at(62.0, 0, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                        Expect::Drain("a"),
                    ),
                ],
            ),
            (
                "no drain that would load the rest beyond tasks_per_slot",
                Settings {
                    tasks_per_slot: 0.5,
                    ..settings(1, 8)
                },
                vec![
                    (
                        at(0.0, 0, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        at(60.0, 0, vec![executor("a", 2, 0), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        at(100.0, 0, vec![executor("a", 2, 0), executor("b", 2, 1)]),
                        Expect::Drain("a"),
                    ),
                ],
            ),
            (
                "cooldown: after adding, neither another add nor a drain until it passes",
                settings(1, 8),
                vec![
                    (at(0.0, 10, one("a", 2)), Expect::Hold),
                    (at(2.0, 10, one("a", 2)), Expect::Add(5)),
                    (
                        at(5.0, 30, vec![executor("a", 2, 2), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        at(11.0, 30, vec![executor("a", 2, 2), executor("b", 2, 2)]),
                        Expect::Hold,
                    ),
                    (
                        at(12.0, 30, vec![executor("a", 2, 2), executor("b", 2, 2)]),
                        Expect::Add(6),
                    ),
                ],
            ),
            (
                "cooldown: idle executors wait for it after an add",
                Settings {
                    idle_timeout: Duration::from_secs(1),
                    ..settings(1, 8)
                },
                vec![
                    (at(0.0, 2, one("a", 2)), Expect::Hold),
                    (at(2.0, 2, one("a", 2)), Expect::Add(1)),
                    (
                        at(3.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(11.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(12.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Drain("a"),
                    ),
                ],
            ),
            (
                "the minimum is reached at once, with no wait and no cooldown",
                settings(2, 8),
                vec![
                    (at(0.0, 0, vec![]), Expect::Add(2)),
                    (starting(at(0.5, 0, vec![]), 2), Expect::Hold),
                    (at(1.0, 0, one("a", 0)), Expect::Add(1)),
                ],
            ),
            (
                "never below the minimum, however idle",
                settings(2, 8),
                vec![
                    (
                        at(0.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                    (
                        at(600.0, 0, vec![executor("a", 2, 0), executor("b", 2, 0)]),
                        Expect::Hold,
                    ),
                ],
            ),
            (
                "never above the maximum, however long the backlog",
                settings(1, 3),
                vec![
                    (at(0.0, 100, one("a", 2)), Expect::Hold),
                    (at(2.0, 100, one("a", 2)), Expect::Add(2)),
                    (
                        at(
                            20.0,
                            100,
                            vec![
                                executor("a", 2, 2),
                                executor("b", 2, 2),
                                executor("c", 2, 2),
                            ],
                        ),
                        Expect::Hold,
                    ),
                    (
                        at(
                            40.0,
                            100,
                            vec![
                                executor("a", 2, 2),
                                executor("b", 2, 2),
                                executor("c", 2, 2),
                            ],
                        ),
                        Expect::Hold,
                    ),
                ],
            ),
            (
                "starting executors count as capacity, so a backlog is not met twice",
                settings(1, 8),
                vec![
                    (at(0.0, 6, one("a", 2)), Expect::Hold),
                    (at(2.0, 6, one("a", 2)), Expect::Add(3)),
                    (starting(at(13.0, 6, one("a", 2)), 3), Expect::Hold),
                    (starting(at(16.0, 6, one("a", 2)), 3), Expect::Hold),
                ],
            ),
            (
                "a draining executor is never capacity: its slots do not hide a backlog",
                settings(1, 8),
                vec![
                    (
                        at(
                            0.0,
                            2,
                            vec![executor("a", 2, 2), draining(executor("b", 4, 0))],
                        ),
                        Expect::Hold,
                    ),
                    (
                        at(
                            2.0,
                            2,
                            vec![executor("a", 2, 2), draining(executor("b", 4, 0))],
                        ),
                        Expect::Add(1),
                    ),
                ],
            ),
            (
                "a draining executor does not count toward the minimum either",
                settings(2, 8),
                vec![(
                    at(
                        0.0,
                        0,
                        vec![executor("a", 2, 0), draining(executor("b", 2, 0))],
                    ),
                    Expect::Add(1),
                )],
            ),
            (
                "tasks_per_slot above 1 tolerates a queue before adding",
                Settings {
                    tasks_per_slot: 2.0,
                    ..settings(1, 8)
                },
                vec![
                    (at(0.0, 2, one("a", 2)), Expect::Hold),
                    (at(3.0, 2, one("a", 2)), Expect::Hold),
                    (at(4.0, 6, one("a", 2)), Expect::Hold),
                    (at(6.0, 6, one("a", 2)), Expect::Add(1)),
                ],
            ),
        ];
        for (name, settings, steps) in cases {
            let mut memory = Memory::default();
            for (step, (snapshot, expected)) in steps.into_iter().enumerate() {
                let (decision, next) = decide(&settings, &memory, &snapshot);
                let got = match decision {
                    Decision::Hold => Expect::Hold,
                    Decision::Add { count, .. } => Expect::Add(count),
                    Decision::Drain { executor, .. } => {
                        Expect::Drain(Box::leak(executor.into_boxed_str()))
                    }
                };
                assert_eq!(got, expected, "{name}: step {step} at {:?}", snapshot.now);
                memory = next;
            }
        }
    }

    #[test]
    fn settings_that_cannot_be_met_are_refused() {
        let cases = [
            (settings(3, 2), "the minimum (3) is above the maximum (2)"),
            (settings(0, 0), "the maximum must be at least 1"),
            (
                Settings {
                    tasks_per_slot: 0.0,
                    ..settings(1, 2)
                },
                "tasks per slot must be above 0, not 0",
            ),
        ];
        for (settings, message) in cases {
            assert_eq!(settings.validate(), Err(message.to_owned()));
        }
        assert_eq!(settings(0, 1).validate(), Ok(()));
    }

    #[test]
    fn reasons_say_what_was_seen() {
        let memory = Memory {
            backlog_since: Some(Duration::ZERO),
            ..Memory::default()
        };
        let (decision, _) = decide(&settings(1, 8), &memory, &at(2.5, 10, one("a", 2)));
        assert_eq!(
            decision,
            Decision::Add {
                count: 5,
                reason: "10 pending and 2 running task(s) on 2 slot(s) for 2.5 s".into()
            }
        );
    }
}
