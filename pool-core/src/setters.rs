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

/// Writes a driver config builder's setters for optional text settings: each
/// `name(value: impl Into<String>)` sets the `Option<String>` field `name` of the
/// builder's config field named before `=>`, with the doc comment written before it.
///
/// ```
/// #[derive(Default)]
/// pub struct ConfigBuilder {
///     config: Config,
/// }
///
/// #[derive(Default)]
/// pub struct Config {
///     pub host: Option<String>,
///     pub user: Option<String>,
/// }
///
/// impl ConfigBuilder {
///     pool_core::string_setters! {
///         config =>
///         /// The host.
///         host;
///         /// The user.
///         user;
///     }
/// }
///
/// let built = ConfigBuilder::default().host("db").user("app").config;
/// assert_eq!(built.host.as_deref(), Some("db"));
/// assert_eq!(built.user.as_deref(), Some("app"));
/// ```
#[macro_export]
macro_rules! string_setters {
    ($config:ident => $($(#[$doc:meta])* $field:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: impl ::core::convert::Into<::std::string::String>) -> Self {
                self.$config.$field = ::core::option::Option::Some(value.into());
                self
            }
        )*
    };
}
