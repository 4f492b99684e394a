//! How long the pool takes to serve again after a fault ends: from each heal (or kill)
//! to the first checkout after it whose transaction then committed.
//!
//! A checkout counts only once its transaction committed, so a connection handed out
//! right after a heal that then fails (a connection the fault killed, not yet noticed)
//! does not count as recovery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One fault's end and, once it happened, how long until the pool served again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The fault that ended (`"blackhole"`, `"kill_all"`, ...).
    pub fault: &'static str,
    /// From the heal to the first checkout after it that committed a transaction;
    /// `None` if none came before the run ended.
    pub after: Option<Duration>,
}

#[derive(Debug)]
struct Heal {
    fault: &'static str,
    at: Instant,
    after: Option<Duration>,
}

/// Every heal of the run, resolved as successful checkouts come in.
#[derive(Debug, Default)]
pub(crate) struct RecoveryLog {
    heals: Mutex<Vec<Heal>>,
    /// Heals not yet followed by a successful checkout, so that the load's tasks take
    /// the lock only while one is pending.
    pending: AtomicUsize,
}

impl RecoveryLog {
    /// A fault ended at `at`.
    pub(crate) fn healed(&self, fault: &'static str, at: Instant) {
        let mut heals = self.heals.lock().unwrap_or_else(PoisonError::into_inner);
        heals.push(Heal {
            fault,
            at,
            after: None,
        });
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// A checkout returned at `checked_out_at` and its transaction committed: every
    /// heal before that moment is recovered.
    pub(crate) fn served(&self, checked_out_at: Instant) {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut heals = self.heals.lock().unwrap_or_else(PoisonError::into_inner);
        for heal in heals.iter_mut().rev() {
            if heal.after.is_some() {
                // Older heals were resolved by the checkout that resolved this one,
                // or an earlier one.
                break;
            }
            if heal.at <= checked_out_at {
                heal.after = Some(checked_out_at - heal.at);
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Whether a heal still waits for a successful checkout.
    pub(crate) fn pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst) > 0
    }

    /// Every heal, in the order they happened.
    pub(crate) fn recoveries(&self) -> Vec<Recovery> {
        let heals = self.heals.lock().unwrap_or_else(PoisonError::into_inner);
        heals
            .iter()
            .map(|heal| Recovery {
                fault: heal.fault,
                after: heal.after,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_resolves_the_heals_before_it_only() {
        let log = RecoveryLog::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        log.healed("blackhole", at(10));
        log.healed("refuse", at(20));
        log.served(at(15));
        log.served(at(18));
        log.served(at(50));
        log.healed("kill_all", at(60));
        assert_eq!(
            log.recoveries(),
            vec![
                Recovery {
                    fault: "blackhole",
                    after: Some(Duration::from_millis(5)),
                },
                Recovery {
                    fault: "refuse",
                    after: Some(Duration::from_millis(30)),
                },
                Recovery {
                    fault: "kill_all",
                    after: None,
                },
            ]
        );
    }
}
