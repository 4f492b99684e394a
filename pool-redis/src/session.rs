//! What the commands sent through a [`RedisConnection`](crate::RedisConnection) leave
//! behind in its session: the state the pool must reset before the next user.

use redis::{Arg, Cmd};

/// The session state a connection's commands may have left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Inside `MULTI` (commands are being queued).
    pub(crate) multi: bool,
    /// Keys are `WATCH`ed.
    pub(crate) watching: bool,
    /// The selected database, `None` when it cannot be known (a `SELECT` queued in a
    /// transaction, a `SWAPDB`...). Starts as the configured one.
    pub(crate) db: Option<i64>,
    /// Subscribed to channels or patterns, or in `MONITOR`.
    pub(crate) subscribed: bool,
    /// `CLIENT TRACKING` is on.
    pub(crate) tracking: bool,
    /// Some other session setting changed (`CLIENT SETNAME`, `AUTH`, `HELLO`,
    /// `READONLY`, `CLIENT NO-EVICT`, a user's `RESET`...).
    pub(crate) other: bool,
    /// Why the connection cannot be reused at all (`CLIENT REPLY OFF`, `QUIT`,
    /// subscribed on RESP2...), if it cannot.
    pub(crate) unusable: Option<&'static str>,
}

impl Session {
    /// A fresh session on database `db`.
    pub(crate) fn new(db: i64) -> Self {
        Session {
            db: Some(db),
            ..Session::default()
        }
    }

    /// Whether anything needs resetting on a connection configured for database `db`.
    pub(crate) fn is_dirty(&self, db: i64) -> bool {
        self.multi
            || self.watching
            || self.db != Some(db)
            || self.subscribed
            || self.tracking
            || self.other
            || self.unusable.is_some()
    }

    /// Notes one command about to be sent. `in_transaction` says it is part of an atomic
    /// pipeline (it runs inside `MULTI`/`EXEC` whatever the session's own state).
    /// `resp3` says whether the connection speaks RESP3 (where pushes are kept apart
    /// from replies).
    pub(crate) fn note(&mut self, cmd: &Cmd, in_transaction: bool, resp3: bool) {
        let mut args = cmd.args_iter().filter_map(|arg| match arg {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        });
        let Some(name) = args.next() else { return };
        let name = upper(name);
        let queued = self.multi || in_transaction;
        match name.as_str() {
            "MULTI" => self.multi = true,
            "EXEC" | "DISCARD" => {
                self.multi = false;
                self.watching = false;
            }
            "WATCH" => self.watching = true,
            "UNWATCH" if !queued => self.watching = false,
            "SELECT" => {
                let target = args
                    .next()
                    .and_then(|db| std::str::from_utf8(db).ok()?.trim().parse::<i64>().ok());
                // Queued, it only runs if the transaction does: the database is then
                // unknown until the next reset.
                self.db = if queued { None } else { target };
            }
            "SWAPDB" => self.other = true,
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR" => {
                self.subscribed = true;
                if !resp3 {
                    // On RESP2 the messages that follow arrive as if they were replies:
                    // the connection's reply stream can no longer be trusted.
                    self.unusable = Some("subscribed or monitoring on RESP2");
                }
            }
            "CLIENT" => {
                let sub = args.next().map(upper).unwrap_or_default();
                match sub.as_str() {
                    "TRACKING" => {
                        let on = args.next().map(upper).unwrap_or_default();
                        self.tracking = on != "OFF";
                    }
                    "REPLY" => {
                        let mode = args.next().map(upper).unwrap_or_default();
                        if mode != "ON" {
                            self.unusable = Some("CLIENT REPLY OFF/SKIP");
                        }
                    }
                    "SETNAME" | "NO-EVICT" | "NO-TOUCH" | "SETINFO" | "CACHING" => {
                        self.other = true
                    }
                    _ => {}
                }
            }
            "HELLO" => {
                // A protocol switch under the connection's feet; a `HELLO` naming the
                // connection's own protocol only re-authenticates or renames.
                let proto = args.next().map(upper).unwrap_or_default();
                let own = if resp3 { "3" } else { "2" };
                if !proto.is_empty() && proto != own {
                    self.unusable = Some("HELLO switched the protocol");
                } else {
                    self.other = true;
                }
            }
            "AUTH" | "READONLY" | "READWRITE" | "ASKING" | "RESET" => self.other = true,
            "QUIT" => self.unusable = Some("QUIT"),
            _ => {}
        }
    }
}

/// Whether `cmd` may block the connection until something happens on the server
/// (`BLPOP`, `XREAD BLOCK`, `WAIT`...): abandoned half-way, such a command keeps the
/// connection busy for as long as it blocks.
pub(crate) fn is_blocking(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let Some(name) = args.next() else {
        return false;
    };
    match upper(name).as_str() {
        "BLPOP" | "BRPOP" | "BRPOPLPUSH" | "BLMOVE" | "BLMPOP" | "BZPOPMIN" | "BZPOPMAX"
        | "BZMPOP" | "WAIT" | "WAITAOF" => true,
        "XREAD" | "XREADGROUP" => args.any(|arg| upper(arg) == "BLOCK"),
        _ => false,
    }
}

fn upper(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(commands: &[&[&str]], resp3: bool) -> Session {
        let mut session = Session::new(0);
        for args in commands {
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            session.note(&cmd, false, resp3);
        }
        session
    }

    #[test]
    fn transactions_and_watches_open_and_close() {
        assert!(noted(&[&["MULTI"]], false).is_dirty(0));
        assert!(!noted(&[&["MULTI"], &["SET", "a", "1"], &["EXEC"]], false).is_dirty(0));
        assert!(!noted(&[&["MULTI"], &["DISCARD"]], false).is_dirty(0));
        assert!(noted(&[&["WATCH", "k"]], false).is_dirty(0));
        assert!(!noted(&[&["WATCH", "k"], &["UNWATCH"]], false).is_dirty(0));
        assert!(!noted(&[&["WATCH", "k"], &["MULTI"], &["EXEC"]], false).is_dirty(0));
    }

    #[test]
    fn the_selected_database_is_followed() {
        assert!(noted(&[&["select", "2"]], false).is_dirty(0));
        assert!(!noted(&[&["SELECT", "2"], &["SELECT", "0"]], false).is_dirty(0));
        // Queued in a transaction that was discarded: unknown until reset.
        let s = noted(
            &[&["SELECT", "3"], &["MULTI"], &["SELECT", "0"], &["DISCARD"]],
            false,
        );
        assert_eq!(s.db, None);
        assert!(s.is_dirty(0));
    }

    #[test]
    fn subscriptions_tracking_and_settings_are_dirty() {
        let s = noted(&[&["SUBSCRIBE", "ch"]], true);
        assert!(s.subscribed && s.unusable.is_none());
        assert!(noted(&[&["SUBSCRIBE", "ch"]], false).unusable.is_some());
        assert!(noted(&[&["CLIENT", "TRACKING", "on"]], false).tracking);
        assert!(!noted(
            &[
                &["CLIENT", "TRACKING", "ON"],
                &["CLIENT", "TRACKING", "OFF"]
            ],
            false
        )
        .is_dirty(0));
        assert!(noted(&[&["CLIENT", "SETNAME", "x"]], false).other);
        assert!(noted(&[&["CLIENT", "REPLY", "OFF"]], false)
            .unusable
            .is_some());
        assert!(noted(&[&["HELLO", "3"]], false).unusable.is_some());
        assert!(!noted(
            &[&["GET", "k"], &["SET", "k", "v"], &["CLIENT", "ID"]],
            false
        )
        .is_dirty(0));
    }

    #[test]
    fn blocking_commands_are_recognised() {
        assert!(is_blocking(redis::cmd("BLPOP").arg("k").arg(0)));
        assert!(is_blocking(
            redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(0)
                .arg("STREAMS")
                .arg("s")
                .arg("$")
        ));
        assert!(!is_blocking(
            redis::cmd("XREAD").arg("STREAMS").arg("s").arg("0")
        ));
        assert!(!is_blocking(redis::cmd("LPOP").arg("k")));
    }
}
