//! Configuring and building a pool.

use std::time::Duration;

use crate::hooks::{BoxFuture, Hooks};
use crate::{BuildError, ConnectionInfo, HookError, Manager, Pool, PoolConfig, Reuse, Runtime};

/// Builds a [`Pool`]. Start with [`Pool::builder`]; each setting is named after its
/// [`PoolConfig`] field, and [`config`](Self::config) takes a whole `PoolConfig`.
///
/// [`build`](Self::build) checks the configuration and names the field at fault.
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<M: Manager> {
    manager: M,
    config: PoolConfig,
    runtime: Option<Runtime>,
    hooks: Hooks<M::Connection>,
}

fn default_runtime() -> Option<Runtime> {
    #[cfg(feature = "tokio")]
    {
        Some(Runtime::Tokio1)
    }
    #[cfg(not(feature = "tokio"))]
    {
        None
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.config.$field = value;
                self
            }
        )*
    };
}

macro_rules! optional_duration_setters {
    ($($(#[$doc:meta])* $field:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// Takes a `Duration`, or `None` to switch it off.
            pub fn $field(mut self, value: impl Into<Option<Duration>>) -> Self {
                self.config.$field = value.into();
                self
            }
        )*
    };
}

impl<M: Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Builder {
            manager,
            config: PoolConfig::default(),
            runtime: default_runtime(),
            hooks: Hooks::default(),
        }
    }

    /// Replaces every setting with `config`'s.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    /// The pool's name in traces and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    setters! {
        /// See [`PoolConfig::max_size`].
        max_size: usize;
        /// See [`PoolConfig::min_idle`].
        min_idle: usize;
        /// See [`PoolConfig::max_connecting`].
        max_connecting: usize;
        /// See [`PoolConfig::connect_backoff`].
        connect_backoff: Duration;
        /// See [`PoolConfig::connect_backoff_max`].
        connect_backoff_max: Duration;
        /// See [`PoolConfig::reuse`].
        reuse: Reuse;
    }

    optional_duration_setters! {
        /// See [`PoolConfig::wait_timeout`].
        wait_timeout;
        /// See [`PoolConfig::connect_timeout`].
        connect_timeout;
        /// See [`PoolConfig::recycle_timeout`].
        recycle_timeout;
        /// See [`PoolConfig::max_lifetime`].
        max_lifetime;
        /// See [`PoolConfig::idle_timeout`].
        idle_timeout;
        /// See [`PoolConfig::check_interval`].
        check_interval;
        /// See [`PoolConfig::leak_threshold`].
        leak_threshold;
    }

    /// The runtime whose timers measure the timeouts and pace upkeep; `None` for a
    /// pool without timeouts. Defaults to tokio with the `tokio` feature, else `None`.
    pub fn runtime(mut self, runtime: impl Into<Option<Runtime>>) -> Self {
        self.runtime = runtime.into();
        self
    }

    /// Runs `hook` on every new connection before first use; an error closes it and
    /// fails the `get` that opened it.
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(
                &'a mut M::Connection,
                &'a ConnectionInfo,
            ) -> BoxFuture<'a, Result<(), HookError>>
            + Send
            + Sync
            + 'static,
    {
        self.hooks.after_connect.push(Box::new(hook));
        self
    }

    /// Runs `hook` each time an existing connection is checked out (a new one runs the
    /// `after_connect` hooks instead); an error closes the connection and the pool
    /// tries another.
    pub fn before_checkout<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(
                &'a mut M::Connection,
                &'a ConnectionInfo,
            ) -> BoxFuture<'a, Result<(), HookError>>
            + Send
            + Sync
            + 'static,
    {
        self.hooks.before_checkout.push(Box::new(hook));
        self
    }

    /// Runs `hook` synchronously on every return; an error (or a panic) closes the
    /// connection instead of keeping it.
    pub fn after_return<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Connection, &ConnectionInfo) -> Result<(), HookError> + Send + Sync + 'static,
    {
        self.hooks.after_return.push(Box::new(hook));
        self
    }

    /// Checks the configuration and builds the pool. Opens no connection: run
    /// [`Pool::upkeep`] (or [`Pool::spawn_upkeep`] on tokio) to open `min_idle` up front.
    pub fn build(self) -> Result<Pool<M>, BuildError> {
        self.config.validate()?;
        if self.runtime.is_none() {
            if let Some(field) = self.config.first_timed_field() {
                return Err(BuildError::NoRuntime { field });
            }
        }
        Ok(Pool::from_parts(
            self.manager,
            self.config,
            self.runtime,
            self.hooks,
        ))
    }
}
