//! What [`PgConnection`](crate::PgConnection)'s query methods take.

use tokio_postgres::{Statement, ToStatement};

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for tokio_postgres::Statement {}
}

/// SQL text (`str`, `String`) or a prepared [`Statement`]: what
/// [`PgConnection`](crate::PgConnection)'s `query`, `query_one`, `query_opt` and
/// `execute` take, the same types as tokio-postgres's [`ToStatement`]. It tells them
/// whether there is SQL text to send as an unnamed statement (in
/// [`StatementMode::Unnamed`](crate::StatementMode::Unnamed)). Sealed.
pub trait SqlOrStatement: ToStatement + sealed::Sealed {
    /// The SQL text, or `None` for a prepared statement.
    fn sql(&self) -> Option<&str>;
}

impl SqlOrStatement for str {
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
}

impl SqlOrStatement for String {
    fn sql(&self) -> Option<&str> {
        Some(self)
    }
}

impl SqlOrStatement for Statement {
    fn sql(&self) -> Option<&str> {
        None
    }
}
