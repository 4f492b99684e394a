//! The server connections the load holds at this moment, from which the kills pick
//! their victims.
//!
//! Only connections checked out right now are offered: their server-side ids are
//! certainly this run's, and certainly alive unless a fault just broke them. A
//! connection killed once is never offered again, even if the pool hands it out before
//! it notices, so no id is killed twice (a server may reuse an id once its connection
//! is gone, and the kill must not reach anybody else's connection).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// A connection the load holds: the pool's id for it and the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Victim {
    pub(crate) pool_id: u64,
    pub(crate) server_id: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pool id to server id, for the connections checked out now.
    held: HashMap<u64, u64>,
    /// Pool ids already killed.
    killed: HashSet<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Victims {
    inner: Mutex<Inner>,
}

impl Victims {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A task checked out `victim`; it is offered until [`released`](Self::released).
    pub(crate) fn held(&self, victim: Victim) {
        let mut inner = self.lock();
        if !inner.killed.contains(&victim.pool_id) {
            inner.held.insert(victim.pool_id, victim.server_id);
        }
    }

    /// The task gave the connection back.
    pub(crate) fn released(&self, pool_id: u64) {
        self.lock().held.remove(&pool_id);
    }

    /// Takes up to `count` of the held connections, chosen by `rng`, for killing;
    /// they are never offered again.
    pub(crate) fn take(&self, count: usize, rng: &mut fastrand::Rng) -> Vec<Victim> {
        let mut inner = self.lock();
        let mut all: Vec<Victim> = inner
            .held
            .iter()
            .map(|(&pool_id, &server_id)| Victim { pool_id, server_id })
            .collect();
        // A HashMap's order is not the seed's: sort, then let the seeded rng choose.
        all.sort_by_key(|v| v.pool_id);
        rng.shuffle(&mut all);
        all.truncate(count);
        for victim in &all {
            inner.held.remove(&victim.pool_id);
            inner.killed.insert(victim.pool_id);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim(pool_id: u64) -> Victim {
        Victim {
            pool_id,
            server_id: pool_id + 100,
        }
    }

    #[test]
    fn a_killed_connection_is_never_offered_again() {
        let victims = Victims::default();
        let mut rng = fastrand::Rng::with_seed(1);
        victims.held(victim(1));
        victims.held(victim(2));
        victims.released(2);
        assert_eq!(victims.take(5, &mut rng), vec![victim(1)]);
        // Handed out again before the pool noticed it is dead: still not offered.
        victims.held(victim(1));
        victims.held(victim(3));
        assert_eq!(victims.take(5, &mut rng), vec![victim(3)]);
        assert!(victims.take(5, &mut rng).is_empty());
    }

    #[test]
    fn takes_at_most_the_count_asked() {
        let victims = Victims::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for id in 1..=6 {
            victims.held(victim(id));
        }
        let first = victims.take(2, &mut rng);
        assert_eq!(first.len(), 2);
        let rest = victims.take(10, &mut rng);
        assert_eq!(rest.len(), 4);
        assert!(first.iter().all(|v| !rest.contains(v)));
    }
}
