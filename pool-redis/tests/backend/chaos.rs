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

    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String> {
        redis::cmd("SMEMBERS")
            .arg(table)
            .query_async(&mut self.admin().await?)
            .await
            .map_err(|e| format!("SMEMBERS {table}: {e}"))
    }

    async fn drop_table(&self, table: &str) -> Result<(), String> {
        self.delete(table).await
    }
}
