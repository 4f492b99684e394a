//! What a pooled connection's wrapper learns from the commands sent through it: the
//! session state they leave behind, calls cancelled half-way, failures that end it.
//! Shared by [`RedisConnection`](crate::RedisConnection) and
//! [`RedisClusterConnection`](crate::RedisClusterConnection).

use redis::{Cmd, RedisError, RedisResult};

use crate::session::{is_blocking, Session};

/// A connection's use as far as its wrapper has seen it.
#[derive(Debug)]
pub(crate) struct Usage {
    /// The database the manager is configured for.
    db: i64,
    resp3: bool,
    session: Session,
    /// Calls started and not finished: non-zero on return means one was cancelled.
    in_flight: usize,
    /// A blocking command was cancelled.
    blocking_abandoned: bool,
    marked_dirty: bool,
    /// A call failed in a way that ends the connection (an I/O error, say).
    broken: bool,
}

/// A call [`Usage::start`] saw begin; [`Usage::finish`] takes it back. A call never
/// handed back was cancelled.
#[must_use = "a call must be finished, or it counts as cancelled"]
pub(crate) struct Call {
    blocking: bool,
}

impl Usage {
    /// A fresh connection configured for database `db`.
    pub(crate) fn new(db: i64, resp3: bool) -> Self {
        Usage {
            db,
            resp3,
            session: Session::new(db),
            in_flight: 0,
            blocking_abandoned: false,
            marked_dirty: false,
            broken: false,
        }
    }

    /// Notes `commands` about to be sent (as one atomic pipeline when `atomic`).
    pub(crate) fn start<'a>(
        &mut self,
        commands: impl IntoIterator<Item = &'a Cmd>,
        atomic: bool,
    ) -> Call {
        let mut blocking = false;
        for cmd in commands {
            self.session.note(cmd, atomic, self.resp3);
            blocking |= is_blocking(cmd);
        }
        self.in_flight += 1;
        if blocking {
            self.blocking_abandoned = true;
        }
        Call { blocking }
    }

    /// Notes that `call` ended with `result`, and passes the result on.
    pub(crate) fn finish<T>(&mut self, call: Call, result: RedisResult<T>) -> RedisResult<T> {
        self.in_flight -= 1;
        if call.blocking {
            self.blocking_abandoned = false;
        }
        self.checked(result)
    }

    /// Notes a failed call of the wrapper's own (not started with [`start`](Self::start)).
    pub(crate) fn checked<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            self.note_error(e);
        }
        result
    }

    /// Notes a failure: an I/O error means the connection is gone.
    pub(crate) fn note_error(&mut self, err: &RedisError) {
        if err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error() {
            self.broken = true;
        }
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.marked_dirty = true;
    }

    /// Whether anything must be reset before the next user.
    pub(crate) fn is_dirty(&self) -> bool {
        self.marked_dirty || self.in_flight > 0 || self.session.is_dirty(self.db)
    }

    /// Why the connection cannot be reused, if it cannot.
    pub(crate) fn unusable_reason(&self) -> Option<&'static str> {
        if self.broken {
            Some("a command failed with an I/O error")
        } else if self.blocking_abandoned {
            Some("a blocking command was cancelled")
        } else {
            self.session.unusable
        }
    }

    /// The session was reset: nothing left behind any more.
    pub(crate) fn mark_clean(&mut self) {
        self.session = Session::new(self.db);
        self.in_flight = 0;
        self.marked_dirty = false;
    }

    /// The session as far as it is known.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The database the commands sent so far leave selected.
    pub(crate) fn db(&self) -> i64 {
        self.session.db.unwrap_or(self.db)
    }

    /// Notes a subscription made through a method of the wrapper's own.
    pub(crate) fn note_subscribed(&mut self) {
        self.session.subscribed = true;
    }
}
