//! The faults: through the proxy, one at a time, each healed after a short random
//! time; and server-side kills of connections the load holds, on a schedule of their
//! own, so the two overlap as real outages do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::network::Network;
use super::run::Run;
use super::tally::ErrorTally;
use super::ChaosBackend;

/// A fault the proxy injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetworkFault {
    /// Every chunk forwarded is delayed by `fixed` plus up to `jitter`.
    Latency { fixed: Duration, jitter: Duration },
    /// Sockets stay open, nothing is forwarded.
    Blackhole,
    /// Every open connection is reset.
    ResetAll,
    /// New connections are refused.
    Refuse,
    /// Connections are cut after this many bytes.
    CutAfter(u64),
}

impl NetworkFault {
    /// Its name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            NetworkFault::Latency { .. } => "latency",
            NetworkFault::Blackhole => "blackhole",
            NetworkFault::ResetAll => "reset_all",
            NetworkFault::Refuse => "refuse",
            NetworkFault::CutAfter(_) => "cut_after",
        }
    }

    /// One of the five, with random parameters.
    fn random(rng: &mut fastrand::Rng) -> Self {
        match rng.u8(..5) {
            0 => NetworkFault::Latency {
                fixed: between(rng, 10, 200),
                jitter: between(rng, 0, 50),
            },
            1 => NetworkFault::Blackhole,
            2 => NetworkFault::ResetAll,
            3 => NetworkFault::Refuse,
            _ => NetworkFault::CutAfter(rng.u64(50..=4000)),
        }
    }
}

/// The pause before each proxy fault, in milliseconds.
const NETWORK_GAP_MS: (u64, u64) = (300, 1500);
/// How long each proxy fault lasts before it is healed, in milliseconds.
const NETWORK_HOLD_MS: (u64, u64) = (100, 3000);
/// The pause before each round of kills, in milliseconds.
const KILL_GAP_MS: (u64, u64) = (300, 2000);
/// One round of kills in this many kills every connection the load holds.
const KILL_ALL_ONE_IN: u8 = 4;
/// The most connections a round that does not kill them all kills.
const KILL_SOME_MAX: usize = 3;

/// How long after a heal a server-side count is put down to that fault.
const AFTERMATH: Duration = Duration::from_secs(1);

/// A random duration from `low` to `high` milliseconds.
fn between(rng: &mut fastrand::Rng, low: u64, high: u64) -> Duration {
    Duration::from_millis(rng.u64(low..=high))
}

/// The proxy fault in force now, and the last one healed.
#[derive(Debug, Default)]
struct NetworkState {
    active: Option<&'static str>,
    last_healed: Option<(&'static str, Instant)>,
}

/// What was injected.
#[derive(Debug, Default)]
pub(crate) struct FaultLog {
    /// Where the proxy stands, so a server-side count can be put in context.
    network: Mutex<NetworkState>,
    /// How many of each fault.
    injected: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections killed server-side.
    pub(crate) killed: AtomicU64,
    /// Kills that found their connection already gone (a fault ended it first).
    pub(crate) kill_errors: ErrorTally,
}

impl FaultLog {
    fn injected(&self, fault: &'static str) {
        *self
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(fault)
            .or_default() += 1;
    }

    fn network(&self) -> std::sync::MutexGuard<'_, NetworkState> {
        self.network.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the proxy stood at `now`: during a fault, shortly after one was healed
    /// (when connections the pool gave up on during it may still reach the server),
    /// or long after any.
    pub(crate) fn network_context(&self, now: Instant) -> String {
        let network = self.network();
        match (network.active, network.last_healed) {
            (Some(fault), _) => format!("during {fault}"),
            (None, Some((fault, at))) if now.saturating_duration_since(at) < AFTERMATH => {
                format!("within {AFTERMATH:?} after {fault} healed")
            }
            (None, Some(_)) => format!("more than {AFTERMATH:?} after the last proxy fault"),
            (None, None) => "before any proxy fault".to_owned(),
        }
    }

    /// How many of each fault, by name.
    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        self.injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&name, &count)| (name, count))
            .collect()
    }
}

/// Sleeps `pause`, or until `until` if that comes first; `false` if `until` came.
async fn pause_within(pause: Duration, until: Instant) -> bool {
    let now = Instant::now();
    if now + pause >= until {
        tokio::time::sleep_until(until.into()).await;
        return false;
    }
    tokio::time::sleep(pause).await;
    true
}

/// Injects proxy faults one after another until `until`, and leaves the proxy healed.
pub(crate) async fn network_faults<B: ChaosBackend>(
    run: &Run<B>,
    network: &Network,
    mut rng: fastrand::Rng,
    until: Instant,
) {
    loop {
        let gap = between(&mut rng, NETWORK_GAP_MS.0, NETWORK_GAP_MS.1);
        if !pause_within(gap, until).await {
            break;
        }
        let fault = NetworkFault::random(&mut rng);
        let hold = between(&mut rng, NETWORK_HOLD_MS.0, NETWORK_HOLD_MS.1);
        network.inject(fault);
        run.faults.injected(fault.name());
        run.faults.network().active = Some(fault.name());
        // Healed even when `until` cuts the hold short.
        pause_within(hold, until).await;
        network.heal();
        let healed = Instant::now();
        *run.faults.network() = NetworkState {
            active: None,
            last_healed: Some((fault.name(), healed)),
        };
        run.recovery.healed(fault.name(), healed);
    }
    network.heal();
}

/// Kills connections the load holds, server-side, until `until`.
pub(crate) async fn kills<B: ChaosBackend>(run: &Run<B>, mut rng: fastrand::Rng, until: Instant) {
    loop {
        let gap = between(&mut rng, KILL_GAP_MS.0, KILL_GAP_MS.1);
        if !pause_within(gap, until).await {
            break;
        }
        let (fault, count) = if rng.u8(..KILL_ALL_ONE_IN) == 0 {
            ("kill_all", usize::MAX)
        } else {
            ("kill_some", rng.usize(1..=KILL_SOME_MAX))
        };
        let victims = run.victims.take(count, &mut rng);
        if victims.is_empty() {
            // Everything held is already dead or nothing is held (a blackhole):
            // nothing to kill this round.
            continue;
        }
        run.faults.injected(fault);
        let mut killing = tokio::task::JoinSet::new();
        for victim in victims {
            let backend = std::sync::Arc::clone(&run.backend);
            killing.spawn(async move { backend.kill_own(victim.server_id).await });
        }
        while let Some(done) = killing.join_next().await {
            match done {
                Ok(Ok(())) => {
                    run.faults.killed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => run.faults.kill_errors.add("kill", || e),
                Err(e) => run.faults.kill_errors.add("kill task", || e.to_string()),
            }
        }
        run.recovery.healed(fault, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_plan() {
        let plan = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..20)
                .map(|_| NetworkFault::random(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(42), plan(42));
        assert_ne!(plan(42), plan(43));
        let kinds: std::collections::BTreeSet<_> = plan(42).iter().map(|f| f.name()).collect();
        assert!(kinds.len() >= 4, "twenty faults covered only {kinds:?}");
    }
}
