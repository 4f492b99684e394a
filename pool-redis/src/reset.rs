//! Bringing a used connection back to what a fresh one is: `RESET` (Redis 6.2 and
//! later) and the settings the manager configures, or on an older server the commands
//! that undo what `RESET` would. Shared by [`Manager`](crate::Manager) and
//! [`ClusterManager`](crate::ClusterManager), which sends it to each node.

use redis::{Pipeline, RedisConnectionInfo, RedisError, Value};

use crate::error::Error;
use crate::session::Session;

/// What a fresh connection is configured with: the protocol, credentials, database and
/// name.
pub(crate) struct SessionSetup<'a> {
    settings: &'a RedisConnectionInfo,
    client_name: Option<&'a str>,
}

/// What the replies to a reset pipeline say.
pub(crate) enum ResetReplies {
    /// Every step succeeded (or had nothing to do).
    Done,
    /// The server has no `RESET`: the older commands must be used instead.
    NoReset,
    /// A step failed.
    Failed(RedisError),
}

impl<'a> SessionSetup<'a> {
    pub(crate) fn new(settings: &'a RedisConnectionInfo, client_name: Option<&'a str>) -> Self {
        SessionSetup {
            settings,
            client_name,
        }
    }

    /// Adds what a fresh connection is configured with, after a `RESET`: the protocol
    /// and credentials, the database, the name. Returns the steps added.
    pub(crate) fn add_setup(&self, pipe: &mut Pipeline, steps: &mut Vec<&'static str>) {
        let settings = self.settings;
        if settings.protocol().supports_resp3() {
            let cmd = pipe.cmd("HELLO").arg(3);
            if let Some(password) = settings.password() {
                cmd.arg("AUTH")
                    .arg(settings.username().unwrap_or("default"))
                    .arg(password);
            }
            steps.push("HELLO");
        } else if settings.password().is_some() {
            add_auth(pipe, settings);
            steps.push("AUTH");
        }
        if settings.db() != 0 {
            pipe.cmd("SELECT").arg(settings.db());
            steps.push("SELECT");
        }
        if let Some(name) = self.client_name {
            pipe.cmd("CLIENT").arg("SETNAME").arg(name);
            steps.push("CLIENT SETNAME");
        }
    }

    /// The commands that reset a connection whose commands left `session` behind:
    /// `RESET` and the configured settings, or (`with_reset` false, an older server)
    /// the commands that undo what `RESET` would. A subscribed connection cannot be
    /// reset without `RESET`.
    pub(crate) fn reset_pipeline(
        &self,
        session: &Session,
        with_reset: bool,
    ) -> Result<(Pipeline, Vec<&'static str>), Error> {
        let mut pipe = redis::pipe();
        let mut steps = Vec::new();
        if with_reset {
            pipe.cmd("RESET");
            steps.push("RESET");
        } else {
            if session.subscribed {
                return Err(Error::Closed {
                    reason: "subscribed, and the server has no RESET to leave pub/sub with",
                });
            }
            pipe.cmd("DISCARD");
            steps.push("DISCARD");
            pipe.cmd("UNWATCH");
            steps.push("UNWATCH");
            if session.tracking {
                pipe.cmd("CLIENT").arg("TRACKING").arg("OFF");
                steps.push("CLIENT TRACKING OFF");
            }
        }
        self.add_setup(&mut pipe, &mut steps);
        // `RESET` selects database 0, and the older path must select it too.
        if !steps.contains(&"SELECT") {
            pipe.cmd("SELECT").arg(self.settings.db());
            steps.push("SELECT");
        }
        Ok((pipe, steps))
    }
}

/// Reads the replies to a [`reset_pipeline`](SessionSetup::reset_pipeline).
pub(crate) fn read_reset_replies(steps: &[&'static str], replies: Vec<Value>) -> ResetReplies {
    for (step, reply) in steps.iter().zip(replies) {
        let Value::ServerError(e) = reply else {
            continue;
        };
        let err = RedisError::from(e);
        match *step {
            // Not in a transaction: nothing to discard.
            "DISCARD" => {}
            "RESET" if is_unknown_command(&err) => return ResetReplies::NoReset,
            _ => return ResetReplies::Failed(err),
        }
    }
    ResetReplies::Done
}

/// `AUTH [username] password`.
pub(crate) fn add_auth(pipe: &mut Pipeline, settings: &RedisConnectionInfo) {
    let cmd = pipe.cmd("AUTH");
    if let Some(user) = settings.username() {
        cmd.arg(user);
    }
    cmd.arg(settings.password().unwrap_or_default());
}

fn is_unknown_command(err: &RedisError) -> bool {
    err.detail()
        .is_some_and(|detail| detail.starts_with("unknown command"))
}
