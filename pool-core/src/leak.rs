//! Which connections are checked out, since when and from where, so upkeep can report
//! those held past `leak_threshold`. Kept only when a threshold is configured.

use std::panic::Location;
use std::time::{Duration, Instant};

struct Checkout {
    id: u64,
    taken_at: Instant,
    taken_from: &'static Location<'static>,
    reported: bool,
}

#[derive(Default)]
pub(crate) struct LeakRegistry {
    entries: Vec<Option<Checkout>>,
    free: Vec<usize>,
}

impl LeakRegistry {
    pub(crate) fn insert(
        &mut self,
        id: u64,
        taken_at: Instant,
        taken_from: &'static Location<'static>,
    ) -> usize {
        let entry = Some(Checkout {
            id,
            taken_at,
            taken_from,
            reported: false,
        });
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = entry;
                key
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, key: usize) {
        if self.entries[key].take().is_some() {
            self.free.push(key);
        }
    }

    /// Reports every checkout held at least `threshold` and not yet reported; returns
    /// when the next unreported one will cross it.
    pub(crate) fn report(
        &mut self,
        pool: &str,
        threshold: Duration,
        now: Instant,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for entry in self.entries.iter_mut().flatten() {
            if entry.reported {
                continue;
            }
            // A threshold too long for an `Instant` is never reached.
            let Some(due) = entry.taken_at.checked_add(threshold) else {
                continue;
            };
            if due <= now {
                entry.reported = true;
                tracing::warn!(
                    pool.name = pool,
                    connection.id = entry.id,
                    held_for = ?now.saturating_duration_since(entry.taken_at),
                    taken_at = %entry.taken_from,
                    "connection held longer than leak_threshold ({threshold:?}); taken at {}",
                    entry.taken_from
                );
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }
}
