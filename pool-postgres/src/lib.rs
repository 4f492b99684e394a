//! The postgres driver for `pool-core`. This crate is a placeholder: its `Manager`
//! arrives with the postgres driver issue. It re-exports `pool_core` so that the
//! workspace layout is in place.

pub use pool_core;
