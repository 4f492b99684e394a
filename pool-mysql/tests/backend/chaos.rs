//! What the chaos run needs beyond the conformance backend: the run's table and a
//! transactional write through the pooled connection. Connection ids are never reused
//! while the server runs, so the default `kill_own` (the conformance kill) is safe.

use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use pool_mysql::MysqlConnection;
use pool_testkit::chaos::ChaosBackend;

use super::{my, Mysql};

impl Mysql {
    /// Runs one statement on a connection of the backend's own.
    async fn admin_statement(&self, statement: String) -> Result<(), String> {
        let mut admin = self.admin().await?;
        let result = admin.query_drop(statement).await.map_err(my);
        let _ = admin.disconnect().await;
        result
    }
}

#[async_trait::async_trait]
impl ChaosBackend for Mysql {
    async fn create_table(&self, table: &str) -> Result<(), String> {
        self.admin_statement(format!(
            "CREATE TABLE {table} (id BIGINT UNSIGNED PRIMARY KEY) ENGINE = InnoDB"
        ))
        .await
    }

    /// mysql_async's own transaction: `START TRANSACTION`, a prepared `INSERT`,
    /// `COMMIT`.
    async fn write_row(
        &self,
        conn: &mut MysqlConnection,
        table: &str,
        id: u64,
    ) -> Result<(), String> {
        let mut transaction = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(my)?;
        transaction
            .exec_drop(format!("INSERT INTO {table} (id) VALUES (?)"), (id,))
            .await
            .map_err(my)?;
        transaction.commit().await.map_err(my)
    }

    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String> {
        let mut admin = self.admin().await?;
        let ids = admin
            .query(format!("SELECT id FROM {table}"))
            .await
            .map_err(my);
        let _ = admin.disconnect().await;
        ids
    }

    async fn drop_table(&self, table: &str) -> Result<(), String> {
        self.admin_statement(format!("DROP TABLE IF EXISTS {table}"))
            .await
    }
}
