//! What the pool knows about one connection, and about itself.

use std::fmt;
use std::time::{Duration, Instant};

/// Why a connection is checked before it is handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckReason {
    /// It sat idle for at least `check_interval`.
    Idle,
    /// It came back dirty ([`ReturnState::Dirty`](crate::ReturnState::Dirty), or the
    /// holder panicked): its session must be reset.
    Dirty,
    /// Another connection was found broken after this one was last checked, so this
    /// one may be dead too (a server restart kills them all).
    PeerBroken,
}

/// Facts about one pooled connection, kept by the pool and passed to
/// [`Manager::recycle`](crate::Manager::recycle), hooks and `retain`.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub(crate) id: u64,
    pub(crate) created_at: Instant,
    pub(crate) expires_at: Option<Instant>,
    pub(crate) last_checked: Instant,
    pub(crate) checkouts: u64,
    pub(crate) check_reason: Option<CheckReason>,
}

impl ConnectionInfo {
    /// Unique among the connections this pool ever opened (starts at 1).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the connection was opened.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// How long ago the connection was opened.
    pub fn age(&self) -> Duration {
        crate::clock::now().saturating_duration_since(self.created_at)
    }

    /// When `max_lifetime` (less this connection's jitter) runs out; `None` without a
    /// lifetime.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// When the connection was last known good: opened, or passed a check.
    pub fn last_checked(&self) -> Instant {
        self.last_checked
    }

    /// How many times the connection has been checked out, this checkout included.
    pub fn checkouts(&self) -> u64 {
        self.checkouts
    }

    /// Why the check now running was due; `None` outside a check.
    pub fn check_reason(&self) -> Option<CheckReason> {
        self.check_reason
    }

    /// Whether the session must be reset (not only pinged) before it is handed out.
    pub fn needs_reset(&self) -> bool {
        self.check_reason == Some(CheckReason::Dirty)
    }
}

/// A snapshot of the pool's counts.
///
/// `size = idle + in_use + connecting`, and `size <= max_size` except while a
/// `resize` down waits for in-use connections to come back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status {
    /// The most connections the pool may hold, counting those being opened.
    pub max_size: usize,
    /// Connections that exist or are being opened.
    pub size: usize,
    /// Connections waiting in the pool.
    pub idle: usize,
    /// Connections checked out (including those being checked before checkout).
    pub in_use: usize,
    /// Connections being opened.
    pub connecting: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "size {}/{}, {} in use, {} idle, {} connecting, {} waiting",
            self.size, self.max_size, self.in_use, self.idle, self.connecting, self.waiting
        )
    }
}
