//! Hooks: user code run at fixed points of a connection's life, able to reject it.
//!
//! - `after_connect` runs once on every new connection; a rejection closes it and the
//!   `get` that opened it fails with [`PoolError::Hook`](crate::PoolError::Hook).
//! - `before_checkout` runs each time an existing connection is checked out (a new
//!   one runs `after_connect` instead); a rejection closes the connection and the
//!   pool tries the next one.
//! - `after_return` runs synchronously on every return; a rejection closes the
//!   connection instead of keeping it. A panic in it counts as a rejection.
//!
//! Hooks run without any pool lock held.

use std::future::Future;
use std::pin::Pin;

use crate::{ConnectionInfo, HookError};

/// A boxed, sendable future, as async hooks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An async hook: `after_connect` or `before_checkout`.
pub type AsyncHook<C> = Box<
    dyn for<'a> Fn(&'a mut C, &'a ConnectionInfo) -> BoxFuture<'a, Result<(), HookError>>
        + Send
        + Sync,
>;

/// A synchronous hook: `after_return`.
pub type SyncHook<C> = Box<dyn Fn(&mut C, &ConnectionInfo) -> Result<(), HookError> + Send + Sync>;

pub(crate) struct Hooks<C> {
    pub(crate) after_connect: Vec<AsyncHook<C>>,
    pub(crate) before_checkout: Vec<AsyncHook<C>>,
    pub(crate) after_return: Vec<SyncHook<C>>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Hooks {
            after_connect: Vec::new(),
            before_checkout: Vec::new(),
            after_return: Vec::new(),
        }
    }
}

pub(crate) async fn run_async<C>(
    hooks: &[AsyncHook<C>],
    conn: &mut C,
    info: &ConnectionInfo,
) -> Result<(), HookError> {
    for hook in hooks {
        hook(conn, info).await?;
    }
    Ok(())
}
