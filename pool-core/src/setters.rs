//! The pool setters every driver's config builder carries.

/// Writes the pool setters of a driver's config builder: `pool` (all of the pool's
/// settings at once), `max_size`, `min_idle` and `wait_timeout`, each setting the
/// [`PoolConfig`](crate::PoolConfig) found at the field path given (from `self`).
///
/// Used inside an `impl` block, so the setters are the builder's own methods:
///
/// ```
/// #[derive(Default)]
/// pub struct ConfigBuilder {
///     config: Config,
/// }
///
/// #[derive(Default)]
/// pub struct Config {
///     pub pool: pool_core::PoolConfig,
/// }
///
/// impl ConfigBuilder {
///     pool_core::pool_setters!(config.pool);
/// }
///
/// let built = ConfigBuilder::default().max_size(16).min_idle(2).config;
/// assert_eq!((built.pool.max_size, built.pool.min_idle), (16, 2));
/// ```
#[macro_export]
macro_rules! pool_setters {
    ($($path:ident).+) => {
        /// Replaces the pool's settings with `pool`.
        pub fn pool(mut self, pool: $crate::PoolConfig) -> Self {
            self.$($path).+ = pool;
            self
        }

        /// See [`PoolConfig::max_size`](pool_core::PoolConfig::max_size).
        pub fn max_size(mut self, max_size: usize) -> Self {
            self.$($path).+.max_size = max_size;
            self
        }

        /// See [`PoolConfig::min_idle`](pool_core::PoolConfig::min_idle).
        pub fn min_idle(mut self, min_idle: usize) -> Self {
            self.$($path).+.min_idle = min_idle;
            self
        }

        /// See [`PoolConfig::wait_timeout`](pool_core::PoolConfig::wait_timeout); `None`
        /// waits without limit.
        pub fn wait_timeout(
            mut self,
            timeout: impl ::core::convert::Into<::core::option::Option<::core::time::Duration>>,
        ) -> Self {
            self.$($path).+.wait_timeout = timeout.into();
            self
        }
    };
}
