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
    /// A cluster connection: its commands go to different nodes, so an `EXEC`,
    /// `DISCARD` or `UNWATCH` may not reach the node holding the `MULTI` or `WATCH`.
    cluster: bool,
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
            cluster: false,
        }
    }

    /// A fresh cluster connection configured for database `db`: a `MULTI` or `WATCH`
    /// it sees keeps it dirty until it is reset, whatever follows.
    pub(crate) fn for_cluster(db: i64, resp3: bool) -> Self {
        Usage {
            cluster: true,
            ..Usage::new(db, resp3)
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
            let (multi, watching) = (self.session.multi, self.session.watching);
            self.session.note(cmd, atomic, self.resp3);
            if self.cluster {
                self.session.multi |= multi;
                self.session.watching |= watching;
            }
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

/// Implements `ConnectionLike` (every command through [`Usage`]) and `Deref`/`DerefMut`
/// to the inner connection for a wrapper with fields `inner: $inner` and `usage: Usage`.
macro_rules! tracked_connection {
    ($wrapper:ty, $inner:ty) => {
        impl ::redis::aio::ConnectionLike for $wrapper {
            fn req_packed_command<'a>(
                &'a mut self,
                cmd: &'a ::redis::Cmd,
            ) -> ::redis::RedisFuture<'a, ::redis::Value> {
                Box::pin(async move {
                    let call = self.usage.start([cmd], false);
                    let result = self.inner.req_packed_command(cmd).await;
                    self.usage.finish(call, result)
                })
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a ::redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> ::redis::RedisFuture<'a, Vec<::redis::Value>> {
                Box::pin(async move {
                    let call = self
                        .usage
                        .start(pipeline.cmd_iter(), pipeline.is_transaction());
                    let result = self
                        .inner
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                    self.usage.finish(call, result)
                })
            }

            fn get_db(&self) -> i64 {
                self.usage.db()
            }
        }

        impl ::std::ops::Deref for $wrapper {
            type Target = $inner;

            fn deref(&self) -> &$inner {
                &self.inner
            }
        }

        impl ::std::ops::DerefMut for $wrapper {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.inner
            }
        }
    };
}
pub(crate) use tracked_connection;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(usage: &mut Usage, commands: &[&str]) {
        for name in commands {
            let call = usage.start([&redis::cmd(name)], false);
            usage.finish(call, Ok(())).unwrap();
        }
    }

    #[test]
    fn a_transaction_closed_command_by_command_is_clean_only_on_one_server() {
        let mut single = Usage::new(0, false);
        run(&mut single, &["MULTI", "EXEC"]);
        assert!(!single.is_dirty());
        // On a cluster, EXEC may have gone to another node than MULTI.
        let mut cluster = Usage::for_cluster(0, false);
        run(&mut cluster, &["MULTI", "EXEC"]);
        assert!(cluster.is_dirty());
        cluster.mark_clean();
        assert!(!cluster.is_dirty());
        let mut cluster = Usage::for_cluster(0, false);
        let mut watch = redis::cmd("WATCH");
        watch.arg("k");
        let call = cluster.start([&watch], false);
        cluster.finish(call, Ok(())).unwrap();
        run(&mut cluster, &["UNWATCH", "DISCARD"]);
        assert!(cluster.is_dirty());
    }

    #[test]
    fn a_cancelled_call_leaves_the_connection_dirty_and_a_cancelled_blocking_one_unusable() {
        let mut usage = Usage::new(0, false);
        let _cancelled = usage.start([&redis::cmd("GET")], false);
        assert!(usage.is_dirty());
        assert!(usage.unusable_reason().is_none());
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("k").arg(0);
        let _cancelled = usage.start([&blpop], false);
        assert_eq!(
            usage.unusable_reason(),
            Some("a blocking command was cancelled")
        );
    }
}
