//! The driver against a real Redis server: resets of every kind of dirty session,
//! discards, errors that name their cause, and authentication on a server with a
//! password.
//!
//! The shared server comes from `pool_testkit::servers::redis()`; cases that need a
//! password configure one on a throwaway server of their own
//! (`servers::redis_throwaway()` and `CONFIG SET requirepass`).

use std::sync::OnceLock;
use std::time::Duration;

use pool_redis::redis::{self, AsyncCommands, Value};
use pool_redis::{Error, Manager, Pool, PoolError, RedisConnection};
use pool_testkit::servers::{self, Server};

/// The shared server's URL, found once for the whole test binary.
fn url() -> String {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| servers::redis().map_err(|e| e.to_string())) {
        Ok(server) => server.url().to_owned(),
        Err(e) => panic!("no Redis server to test against: {e}"),
    }
}

fn name(test: &str) -> String {
    format!("pool_redis_test_{test}_{}", std::process::id())
}

fn pool(manager: Manager) -> Pool {
    Pool::builder(manager)
        .max_size(1)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .expect("a pool")
}

/// `CLIENT INFO` of `conn`, as `key=value` fields, asked through the inner connection.
async fn client_info(conn: &mut RedisConnection) -> Vec<String> {
    let reply = conn
        .inner()
        .send_packed_command(redis::cmd("CLIENT").arg("INFO"))
        .await
        .expect("CLIENT INFO");
    let text = match reply {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } => text,
        Value::SimpleString(text) => text,
        other => panic!("CLIENT INFO answered {other:?}"),
    };
    text.split_whitespace().map(str::to_owned).collect()
}

fn field<'a>(info: &'a [String], key: &str) -> &'a str {
    info.iter()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {info:?}"))
}

/// Checks out the only connection, runs `dirty` on it, returns it, and checks out
/// again: the same server connection comes back with a fresh session.
async fn reset_after(
    info: &redis::ConnectionInfo,
    test: &str,
    dirty: impl AsyncFnOnce(&mut RedisConnection),
) {
    let manager = Manager::new(info.clone()).client_name(name(test));
    let pool = pool(manager);
    let first = {
        let mut conn = pool.get().await.unwrap();
        dirty(&mut conn).await;
        assert!(conn.is_dirty(), "{test}: not seen as dirty");
        conn.client_id()
    };
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.client_id(), first, "{test}: replaced, not reset");
    assert!(!conn.is_dirty(), "{test}: still dirty after the reset");
    let info = client_info(&mut conn).await;
    assert_eq!(field(&info, "multi"), "-1", "{test}: {info:?}");
    assert_eq!(field(&info, "db"), "2", "{test}: {info:?}");
    assert_eq!(field(&info, "sub"), "0", "{test}: {info:?}");
    assert_eq!(field(&info, "psub"), "0", "{test}: {info:?}");
    assert_eq!(field(&info, "name"), name(test), "{test}: {info:?}");
    assert!(
        !field(&info, "flags").contains('t'),
        "{test}: tracking left on: {info:?}"
    );
    // And it works.
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// The shared server on database 2 (so that `SELECT 0` is a change), as `protocol`.
fn info_db2(protocol: redis::ProtocolVersion) -> redis::ConnectionInfo {
    let info: redis::ConnectionInfo = url().parse().unwrap();
    let settings = info
        .redis_settings()
        .clone()
        .set_db(2)
        .set_protocol(protocol);
    info.set_redis_settings(settings)
}

#[tokio::test]
async fn every_kind_of_dirty_session_is_reset_on_the_same_connection() {
    let url = info_db2(redis::ProtocolVersion::RESP2);
    reset_after(&url, "multi", async |c| {
        redis::cmd("MULTI").query_async::<()>(c).await.unwrap();
        let queued: String = redis::cmd("SET")
            .arg("k")
            .arg(1)
            .query_async(c)
            .await
            .unwrap();
        assert_eq!(queued, "QUEUED");
    })
    .await;
    reset_after(&url, "watch", async |c| {
        redis::cmd("WATCH")
            .arg("k")
            .query_async::<()>(c)
            .await
            .unwrap();
    })
    .await;
    reset_after(&url, "select", async |c| {
        redis::cmd("SELECT")
            .arg(0)
            .query_async::<()>(c)
            .await
            .unwrap();
    })
    .await;
    reset_after(&url, "tracking", async |c| {
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .query_async::<()>(c)
            .await
            .unwrap();
    })
    .await;
    reset_after(&url, "setname", async |c| {
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("someone_else")
            .query_async::<()>(c)
            .await
            .unwrap();
    })
    .await;
    reset_after(&url, "marked", async |c| c.mark_dirty()).await;
}

#[tokio::test]
async fn a_subscribed_resp3_connection_is_reset_and_keeps_resp3() {
    let url = info_db2(redis::ProtocolVersion::RESP3);
    reset_after(&url, "subscribe", async |c| {
        c.subscribe("pool-redis-test-channel").await.unwrap();
        c.psubscribe("pool-redis-test-*").await.unwrap();
    })
    .await;
    let pool = pool(Manager::new(url).client_name(name("resp3")));
    let mut conn = pool.get().await.unwrap();
    conn.mark_dirty();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(field(&client_info(&mut conn).await, "resp"), "3");
}

#[tokio::test]
async fn a_subscribed_resp2_connection_is_discarded() {
    let pool = pool(Manager::from_url(&url()).unwrap().client_name(name("sub2")));
    let first = {
        let mut conn = pool.get().await.unwrap();
        let _: Value = redis::cmd("SUBSCRIBE")
            .arg("pool-redis-test")
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert!(conn.is_closed());
        conn.client_id()
    };
    let mut conn = pool.get().await.unwrap();
    assert_ne!(conn.client_id(), first);
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_cancelled_command_is_reset_and_a_cancelled_blocking_one_discarded() {
    let pool = pool(
        Manager::from_url(&url())
            .unwrap()
            .client_name(name("cancel")),
    );
    let key = format!("pool-redis-test-cancel-{}", std::process::id());
    let first = {
        let mut conn = pool.get().await.unwrap();
        // Cancelled before its reply is read: the pool cannot know what ran.
        // A script that keeps the server busy for 50 ms.
        let slow = redis::cmd("EVAL")
            .arg(
                "local s = redis.call('TIME') \
                 while true do \
                   local n = redis.call('TIME') \
                   if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 50000 then break end \
                 end",
            )
            .arg(0)
            .to_owned();
        let cancelled =
            tokio::time::timeout(Duration::from_millis(5), slow.query_async::<()>(&mut *conn))
                .await;
        assert!(cancelled.is_err(), "the 50ms script finished within 5ms");
        assert!(conn.is_dirty() && !conn.is_closed());
        conn.client_id()
    };
    let second = {
        let mut conn = pool.get().await.unwrap();
        assert_eq!(conn.client_id(), first, "replaced, not reset");
        let _: () = conn.set(&key, 1).await.unwrap();
        let n: i64 = conn.get(&key).await.unwrap();
        assert_eq!(n, 1, "replies out of step after the reset");
        let blpop = redis::cmd("BLPOP").arg(&key).arg(0).to_owned();
        let _: () = conn.del(&key).await.unwrap();
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            blpop.query_async::<Value>(&mut *conn),
        )
        .await;
        assert!(cancelled.is_err(), "BLPOP on an empty list returned");
        assert!(
            conn.is_closed(),
            "a cancelled BLPOP leaves the connection blocked"
        );
        conn.client_id()
    };
    assert_eq!(first, second);
    let mut conn = pool.get().await.unwrap();
    assert_ne!(
        conn.client_id(),
        first,
        "the blocked connection was handed out"
    );
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_connection_killed_while_idle_is_noticed_without_a_check() {
    let manager = Manager::from_url(&url())
        .unwrap()
        .client_name(name("idle_kill"));
    let pool = pool(manager.clone());
    let first = pool.get().await.unwrap().client_id();
    let mut admin = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(first)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // The socket's task ends when the server closes it; no check is due (no
    // check_interval), so only that tells the pool.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = pool.get().await.unwrap();
    assert_ne!(conn.client_id(), first, "a dead connection was handed out");
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn connect_errors_name_their_cause() {
    // Nothing listens on port 1.
    let err = pool(Manager::from_url("redis://:s3cret@127.0.0.1:1/0").unwrap())
        .get()
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("connection refused"), "{shown}");
    assert!(shown.contains("redis://:***@127.0.0.1:1/0"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        matches!(&err, PoolError::Backend(e) if e.is_refused()),
        "{err:?}"
    );

    let err = pool(
        Manager::from_url("redis://no-such-host.invalid:6379")
            .unwrap()
            .connect_timeout(Duration::from_secs(5)),
    )
    .get()
    .await
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("cannot resolve the host name") || shown.contains("timed out"),
        "{shown}"
    );

    let missing = std::env::temp_dir().join(format!("pool-redis-none-{}.sock", std::process::id()));
    let err = pool(Manager::from_url(&format!("unix://{}", missing.display())).unwrap())
        .get()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such socket"), "{err}");
}

/// A throwaway server with a password, and its URL without one.
fn server_with_password(password: &str) -> (Server, String) {
    let server = servers::redis_throwaway().expect("a throwaway redis-server");
    let url = server.url().to_owned();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query::<()>(&mut conn)
        .unwrap();
    (server, url)
}

fn with_password(url: &str, user: &str, password: &str) -> String {
    url.replacen("redis://", &format!("redis://{user}:{password}@"), 1)
}

#[tokio::test]
async fn authentication_fails_with_the_servers_words_and_succeeds_across_resets() {
    let (_server, url) = server_with_password("right-pw");

    for protocol in ["", "?protocol=resp3"] {
        let wrong = format!("{}{protocol}", with_password(&url, "", "wrong-pw"));
        let err = pool(Manager::from_url(&wrong).unwrap())
            .get()
            .await
            .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("authentication failed"),
            "{protocol}: {shown}"
        );
        assert!(shown.contains("WRONGPASS"), "{protocol}: {shown}");
        assert!(!shown.contains("wrong-pw"), "{protocol}: {shown}");
        assert!(
            matches!(&err, PoolError::Backend(Error::Auth { .. })),
            "{err:?}"
        );

        // No password at all: the server says so on the first command.
        let none = format!("{url}{protocol}");
        let err = pool(Manager::from_url(&none).unwrap().client_name("x"))
            .get()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("authentication failed"),
            "{protocol}: {err}"
        );
        assert!(err.to_string().contains("NOAUTH"), "{protocol}: {err}");

        // The right password, on database 3, through a reset: `RESET` drops the
        // authentication, the database and the name; all come back.
        let right = format!("{}/3{protocol}", with_password(&url, "default", "right-pw"));
        let pool = pool(Manager::from_url(&right).unwrap().client_name(name("auth")));
        let first = {
            let mut conn = pool.get().await.unwrap();
            redis::cmd("MULTI")
                .query_async::<()>(&mut *conn)
                .await
                .unwrap();
            conn.client_id()
        };
        let mut conn = pool.get().await.unwrap();
        assert_eq!(conn.client_id(), first);
        let info = client_info(&mut conn).await;
        assert_eq!(field(&info, "db"), "3", "{protocol}: {info:?}");
        assert_eq!(field(&info, "name"), name("auth"), "{protocol}: {info:?}");
        assert_eq!(field(&info, "user"), "default", "{protocol}: {info:?}");
        let expected_resp = if protocol.is_empty() { "2" } else { "3" };
        assert_eq!(field(&info, "resp"), expected_resp, "{protocol}: {info:?}");
        let _: () = conn.set("k", "v").await.unwrap();
    }

    // A password given to a server without one.
    let (server, url) = {
        let server = servers::redis_throwaway().expect("a throwaway redis-server");
        let url = server.url().to_owned();
        (server, url)
    };
    let err = pool(Manager::from_url(&with_password(&url, "", "pw")).unwrap())
        .get()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert!(
        err.to_string().contains("without any password configured"),
        "{err}"
    );
    drop(server);
}

#[tokio::test]
async fn a_dropped_connection_closes_on_the_server() {
    let client_name = name("drop");
    let manager = Manager::from_url(&url()).unwrap().client_name(&client_name);
    let pool = pool(manager);
    let mut conn = pool.get().await.unwrap();
    // A clone of the inner connection does not keep the socket open.
    let _clone = conn.inner().clone();
    drop(conn);
    pool.close(Duration::from_secs(5)).await.unwrap();
    let mut admin = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut admin)
            .await
            .unwrap();
        let needle = format!("name={client_name}");
        if !list
            .lines()
            .any(|l| l.split_whitespace().any(|f| f == needle))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still connected: {list}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `redis-server` of this test's own, without the `RESET` command (as before Redis
/// 6.2); killed on drop.
struct NoResetServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for NoResetServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_without_reset() -> NoResetServer {
    let dir = std::env::temp_dir().join(format!("pool-redis-noreset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir", "."])
        .args(["--rename-command", "RESET", ""])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start redis-server (install redis-server)");
    let mut server = NoResetServer { child, dir, port };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("redis-server exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[tokio::test]
async fn servers_without_reset_are_cleaned_with_the_older_commands() {
    let server = server_without_reset();
    let info: redis::ConnectionInfo = format!("redis://127.0.0.1:{}/2", server.port)
        .parse()
        .unwrap();
    reset_after(&info, "noreset", async |c| {
        redis::cmd("WATCH")
            .arg("k")
            .query_async::<()>(&mut *c)
            .await
            .unwrap();
        redis::cmd("SELECT")
            .arg(5)
            .query_async::<()>(&mut *c)
            .await
            .unwrap();
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .query_async::<()>(&mut *c)
            .await
            .unwrap();
        redis::cmd("MULTI").query_async::<()>(c).await.unwrap();
    })
    .await;

    // Subscribed: no way out without RESET, so it is replaced.
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let manager = Manager::new(info.clone().set_redis_settings(settings)).client_name(name("nr3"));
    let pool = pool(manager);
    let first = {
        let mut conn = pool.get().await.unwrap();
        conn.subscribe("pool-redis-test").await.unwrap();
        conn.client_id()
    };
    let mut conn = pool.get().await.unwrap();
    assert_ne!(
        conn.client_id(),
        first,
        "a subscribed connection was handed out"
    );
    assert_eq!(field(&client_info(&mut conn).await, "sub"), "0");
}
