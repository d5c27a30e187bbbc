//! Route cost per call event with many agents connected: the pop must cost
//! O(agents ringing), not O(sockets), so 1,000 and 10,000 connected agents
//! should show the same figures.
//!
//! `cargo bench -p fiche-hub --bench route`

use chrono::{DateTime, Duration as ChronoDuration};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use fiche_hub::{AgentInfo, Card, Connection, CustomerCard, Hub, HubConfig, Role, Viewer};
use fiche_model::{
    CallEvent, CallEventKind, CallId, Direction, Extension, Outcome, Party, Source, Timestamp,
};
use std::time::{Duration, Instant};

/// Supervisors watching the board while agents work.
const SUPERVISORS: i64 = 10;
/// Calls in progress on other agents while the measured call happens.
const BACKGROUND_CALLS: usize = 500;

struct Bench {
    hub: Hub,
    agents: Vec<Connection>,
    supervisors: Vec<Connection>,
    next_call: u64,
    since_prune: u32,
}

fn at(s: i64) -> Timestamp {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
}

fn ext(i: usize) -> String {
    format!("{}", 10_000 + i)
}

fn extension(i: usize) -> Extension {
    Extension::new(&ext(i)).unwrap_or_else(|| unreachable!("a number is never empty"))
}

fn event(key: &str, kind: CallEventKind) -> CallEvent {
    CallEvent {
        call_id: CallId::from_source_key(Source::Hep, key),
        source: Source::Hep,
        at: at(0),
        kind,
    }
}

fn started(key: &str) -> CallEvent {
    event(
        key,
        CallEventKind::CallStarted {
            source_key: key.to_owned(),
            direction: Direction::Inbound,
            caller: Party {
                number: Some("+33612345678".into()),
                name: Some("Mme Martin".into()),
                withheld: false,
            },
            callee: Party {
                number: Some("600".into()),
                ..Party::default()
            },
            diverted_from: vec![],
            queue: None,
        },
    )
}

fn card() -> Card {
    Card {
        caller_display: "+33 6 12 34 56 78".into(),
        customer: Some(CustomerCard {
            id: 7,
            name: "Mme Martin".into(),
            company: Some("Boulangerie Martin".into()),
            tags: vec!["VIP".into()],
            notes: Some("Préfère être rappelée le matin.".into()),
            ..CustomerCard::default()
        }),
        other_matches: vec![],
        unknown: false,
    }
}

impl Bench {
    fn new(agents: usize) -> Self {
        let hub = Hub::new(HubConfig::default());
        hub.set_agents(
            (0..agents)
                .map(|i| AgentInfo {
                    user_id: i as i64,
                    name: format!("Agent {i}"),
                    extensions: vec![ext(i)],
                })
                .collect(),
        );
        let agent_conns = (0..agents)
            .map(|i| {
                hub.connect(Viewer {
                    user_id: i as i64,
                    role: Role::Agent,
                    extensions: vec![ext(i)],
                })
            })
            .collect();
        let supervisors = (0..SUPERVISORS)
            .map(|i| {
                hub.connect(Viewer {
                    user_id: 1_000_000 + i,
                    role: Role::Supervisor,
                    extensions: vec![],
                })
            })
            .collect();
        let mut bench = Self {
            hub,
            agents: agent_conns,
            supervisors,
            next_call: 0,
            since_prune: 0,
        };
        for i in 0..BACKGROUND_CALLS {
            let key = format!("bg{i}");
            let e = extension(agents - 1 - i % agents);
            bench.hub.publish_call(&started(&key), None);
            bench.hub.publish_call(
                &event(
                    &key,
                    CallEventKind::Ringing {
                        extension: e.clone(),
                    },
                ),
                None,
            );
            bench.hub.publish_call(
                &event(&key, CallEventKind::Answered { extension: Some(e) }),
                None,
            );
        }
        bench.drain_all();
        bench
    }

    fn drain_all(&mut self) {
        for conn in self.agents.iter_mut().chain(self.supervisors.iter_mut()) {
            while conn.try_recv().is_some() {}
        }
    }

    fn drain(&mut self, agents: &[usize]) {
        for &i in agents {
            while self.agents[i].try_recv().is_some() {}
        }
        for conn in &mut self.supervisors {
            while conn.try_recv().is_some() {}
        }
    }

    /// One call ringing at `ringing` agents, answered by the first, then ended.
    /// Returns the time spent publishing the Ringing events alone, and the whole.
    fn call(&mut self, ringing: &[usize]) -> (Duration, Duration) {
        self.next_call += 1;
        let key = format!("c{}", self.next_call);
        let total = Instant::now();
        self.hub.publish_call(&started(&key), Some(card()));
        let pop = Instant::now();
        for &i in ringing {
            self.hub.publish_call(
                &event(
                    &key,
                    CallEventKind::Ringing {
                        extension: extension(i),
                    },
                ),
                None,
            );
        }
        let pop = pop.elapsed();
        self.hub.publish_call(
            &event(
                &key,
                CallEventKind::Answered {
                    extension: Some(extension(ringing[0])),
                },
            ),
            None,
        );
        self.hub.publish_call(
            &event(
                &key,
                CallEventKind::Ended {
                    outcome: Outcome::Answered,
                    cause: "BYE".into(),
                },
            ),
            None,
        );
        let total = total.elapsed();
        self.drain(ringing);
        self.since_prune += 1;
        if self.since_prune == 1_000 {
            self.since_prune = 0;
            self.hub.prune(at(0) + ChronoDuration::seconds(1));
        }
        (pop, total)
    }
}

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for agents in [1_000usize, 10_000] {
        let mut bench = Bench::new(agents);
        let mut n = 0usize;
        // Time of one Ringing event (the pop) to one agent.
        group.bench_function(BenchmarkId::new("pop_one_agent", agents), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    n = (n + 7) % agents;
                    spent += bench.call(&[n]).0;
                }
                spent
            })
        });
        // A whole call (start + ring + answer + end = 4 events) to one agent.
        group.bench_function(BenchmarkId::new("call_4_events", agents), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    n = (n + 7) % agents;
                    spent += bench.call(&[n]).1;
                }
                spent
            })
        });
        // Ring group of three, answered by one: 3 pops, 2 withdrawals.
        group.bench_function(BenchmarkId::new("ring_group_call_6_events", agents), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    n = (n + 7) % (agents - 2);
                    spent += bench.call(black_box(&[n, n + 1, n + 2])).1;
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
