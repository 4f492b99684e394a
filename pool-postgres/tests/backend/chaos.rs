//! What the chaos run needs beyond the conformance backend: the run's table, a
//! transactional write through the pooled connection, and kills limited to this
//! backend's own connections.

use std::time::{Duration, Instant};

use pool_postgres::PgConnection;
use pool_testkit::chaos::ChaosBackend;

use super::{pg, Postgres};

#[async_trait::async_trait]
impl ChaosBackend for Postgres {
    async fn create_table(&self, table: &str) -> Result<(), String> {
        self.admin()
            .await?
            .batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"))
            .await
            .map_err(pg)
    }

    /// tokio-postgres's own transaction: `BEGIN`, a parameterised `INSERT`, `COMMIT`.
    async fn write_row(&self, conn: &mut PgConnection, table: &str, id: u64) -> Result<(), String> {
        let id = i64::try_from(id).map_err(|_| format!("row id {id} too large"))?;
        let transaction = conn.transaction().await.map_err(pg)?;
        transaction
            .execute(&format!("INSERT INTO {table} (id) VALUES ($1)"), &[&id])
            .await
            .map_err(pg)?;
        transaction.commit().await.map_err(pg)
    }

    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String> {
        let rows = self
            .admin()
            .await?
            .query(&format!("SELECT id FROM {table}"), &[])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get(0);
                u64::try_from(id).map_err(|_| format!("a negative id in {table}: {id}"))
            })
            .collect()
    }

    async fn drop_table(&self, table: &str) -> Result<(), String> {
        self.admin()
            .await?
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .map_err(pg)
    }

    /// Terminates the backend only if it carries this run's `application_name`, in one
    /// statement: process ids are reused, and a pid whose connection a fault already
    /// ended may belong to somebody else's connection by now.
    async fn kill_own(&self, server_id: u64) -> Result<(), String> {
        let pid = i32::try_from(server_id).map_err(|_| format!("pid {server_id} too large"))?;
        let admin = self.admin().await?;
        let terminated = admin
            .query_opt(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE pid = $1 AND application_name = $2",
                &[&pid, &self.app],
            )
            .await
            .map_err(pg)?
            .is_some_and(|row| row.get::<_, bool>(0));
        if !terminated {
            return Err(format!("backend {pid} is gone (not one of this run's)"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .map_err(pg)?
                .get(0);
            if alive == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("backend {pid} still there 10s after termination"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
