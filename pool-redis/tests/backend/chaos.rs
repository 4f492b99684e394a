//! What the chaos run needs beyond the conformance backend: the run's "table" is a set
//! under a key of its own, written in a `MULTI`/`EXEC` transaction through the pooled
//! connection. Client ids are never reused while the server runs, so the default
//! `kill_own` (the conformance kill) is safe.

use pool_redis::redis;
use pool_redis::RedisConnection;
use pool_testkit::chaos::ChaosBackend;

use super::Redis;

impl Redis {
    /// `DEL key` on a connection of the backend's own.
    async fn delete(&self, key: &str) -> Result<(), String> {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut self.admin().await?)
            .await
            .map_err(|e| format!("DEL {key}: {e}"))
    }
}

#[async_trait::async_trait]
impl ChaosBackend for Redis {
    /// Nothing to create in redis: the set comes with its first member. Any key left
    /// by an earlier run of the same name goes.
    async fn create_table(&self, table: &str) -> Result<(), String> {
        self.delete(table).await
    }

    /// `MULTI`, `SADD table id`, `EXEC`, as an atomic pipeline of the redis crate.
    async fn write_row(
        &self,
        conn: &mut RedisConnection,
        table: &str,
        id: u64,
    ) -> Result<(), String> {
        redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(table)
            .arg(id)
            .ignore()
            .query_async::<()>(conn)
            .await
            .map_err(|e| format!("MULTI/SADD/EXEC: {e}"))
    }

    /// `SSCAN` in batches: a long run's set is too big for one `SMEMBERS` reply within
    /// the connection's response timeout. (`SSCAN` may return an id twice; the run
    /// counts distinct ids.)
    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String> {
        let mut admin = self.admin().await?;
        let mut ids = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<u64>) = redis::cmd("SSCAN")
                .arg(table)
                .arg(cursor)
                .arg("COUNT")
                .arg(5000)
                .query_async(&mut admin)
                .await
                .map_err(|e| format!("SSCAN {table} {cursor}: {e}"))?;
            ids.extend(batch);
            if next == 0 {
                return Ok(ids);
            }
            cursor = next;
        }
    }

    async fn drop_table(&self, table: &str) -> Result<(), String> {
        self.delete(table).await
    }
}
