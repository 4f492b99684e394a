//! Errors of the pool, its builder, its hooks and `close`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::Status;

/// Which of the pool's separately bounded steps ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// Waiting for a connection to come free (`wait_timeout`).
    Wait,
    /// Opening a new connection (`connect_timeout`).
    Connect,
    /// Checking or resetting a connection before checkout (`recycle_timeout`).
    Recycle,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Wait => "waiting for a connection",
            TimeoutKind::Connect => "opening a connection",
            TimeoutKind::Recycle => "checking a connection before checkout",
        })
    }
}

/// What the pool looked like when a timeout fired, so the log line alone explains it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutContext {
    /// The bound that ran out.
    pub after: Duration,
    /// For a connect timeout, where the connect was going
    /// ([`Manager::target`](crate::Manager::target)).
    pub target: Option<String>,
    /// The pool's counts at that moment.
    pub status: Status,
    /// The most recent connect failure, if the pool has seen one since it last
    /// connected successfully.
    pub last_connect_error: Option<String>,
}

/// Why [`Pool::get`](crate::Pool::get) and its siblings failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// A step ran out of time; [`TimeoutContext`] says how the pool stood.
    Timeout(TimeoutKind, Box<TimeoutContext>),
    /// The driver failed (connect or check), with its own error.
    Backend(E),
    /// The pool is backing off after connect failures and has no connection to give;
    /// it fails at once instead of hammering the server or making the caller wait out
    /// its timeout. `last_error` is the driver's message from the failure that started
    /// (or extended) the back-off.
    Unavailable {
        /// The last connect failure, as the driver worded it.
        last_error: String,
        /// When the pool will try to connect again.
        retry_in: Duration,
    },
    /// The pool was closed.
    Closed,
    /// A timeout was asked for, but the pool has no [`Runtime`](crate::Runtime) to
    /// measure it.
    NoRuntime,
    /// An `after_connect` hook rejected the new connection.
    Hook(HookError),
}

impl<E> PoolError<E> {
    /// The timeout's kind, if this is a timeout.
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match self {
            PoolError::Timeout(kind, _) => Some(*kind),
            _ => None,
        }
    }

    /// The driver's error, if this is one.
    pub fn backend(&self) -> Option<&E> {
        match self {
            PoolError::Backend(e) => Some(e),
            _ => None,
        }
    }
}

/// Writes `err` and the messages of its sources that it does not already show, so that
/// a wrapper such as tokio-postgres's "db error" is followed by the server's words.
pub(crate) fn write_error_chain(f: &mut impl fmt::Write, err: &dyn StdError) -> fmt::Result {
    let mut shown = err.to_string();
    f.write_str(&shown)?;
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !shown.contains(&text) {
            write!(f, ": {text}")?;
            shown.push_str(&text);
        }
        source = cause.source();
    }
    Ok(())
}

/// `err` with its sources, as [`PoolError`]'s `Display` shows a backend error.
pub(crate) fn error_chain_string(err: &dyn StdError) -> String {
    let mut out = String::new();
    let _ = write_error_chain(&mut out, err);
    out
}

impl<E: StdError> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Timeout(kind, ctx) => {
                write!(f, "timed out after {:?} {kind}", ctx.after)?;
                if let Some(target) = &ctx.target {
                    write!(f, " to {target}")?;
                }
                write!(f, " (pool: {})", ctx.status)?;
                if let Some(last) = &ctx.last_connect_error {
                    write!(f, "; last connect error: {last}")?;
                }
                Ok(())
            }
            PoolError::Backend(e) => write_error_chain(f, e),
            PoolError::Unavailable {
                last_error,
                retry_in,
            } => write!(
                f,
                "database unavailable (next connect attempt in {retry_in:?}): {last_error}"
            ),
            PoolError::Closed => f.write_str("the pool is closed"),
            PoolError::NoRuntime => {
                f.write_str("a timeout was requested but the pool has no runtime to measure it")
            }
            PoolError::Hook(e) => write!(f, "after_connect hook rejected the connection: {e}"),
        }
    }
}

impl<E: StdError + 'static> StdError for PoolError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PoolError::Backend(e) => Some(e),
            PoolError::Hook(e) => e.source(),
            _ => None,
        }
    }
}

/// Why a [`Builder`](crate::Builder) or `resize` refused a configuration. Names the
/// field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A field has a value that makes no sense.
    InvalidConfig {
        /// The configuration field, as named in [`PoolConfig`](crate::PoolConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout (or upkeep, which needs a timer) was configured but no runtime was.
    NoRuntime {
        /// The field that needs a runtime.
        field: &'static str,
    },
}

impl BuildError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        BuildError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// The configuration field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            BuildError::InvalidConfig { field, .. } | BuildError::NoRuntime { field } => field,
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidConfig { field, reason } => {
                write!(f, "invalid pool configuration: `{field}` {reason}")
            }
            BuildError::NoRuntime { field } => write!(
                f,
                "invalid pool configuration: `{field}` needs a runtime to measure time; \
                 set one with `Builder::runtime` or unset `{field}`"
            ),
        }
    }
}

impl StdError for BuildError {}

/// A hook's refusal of a connection, with its reason.
#[derive(Debug)]
pub struct HookError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl HookError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        HookError {
            message: message.into(),
            source: None,
        }
    }

    /// A refusal caused by an error.
    pub fn from_error(error: impl StdError + Send + Sync + 'static) -> Self {
        HookError {
            message: error_chain_string(&error),
            source: Some(Box::new(error)),
        }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for HookError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `close` reached its deadline with connections still checked out. They are closed
/// when they come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseError {
    /// Connections still checked out (or being opened) at the deadline.
    pub in_use: usize,
    /// The deadline that passed.
    pub after: Duration,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool close deadline of {:?} passed with {} connection(s) still in use; \
             they close when they are returned",
            self.after, self.in_use
        )
    }
}

impl StdError for CloseError {}
