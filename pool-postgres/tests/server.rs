//! The driver against a real PostgreSQL server, from `pool_testkit::servers::postgres()`:
//! the URL in `POOL_TEST_POSTGRES_URL`, else the server on 127.0.0.1:5432, else a
//! throwaway server started for this test binary (stopped when it exits).

use std::sync::OnceLock;
use std::time::Duration;

use pool_core::Manager as _;
use pool_postgres::{Manager, Pool, PoolError};
use pool_testkit::servers::{self, Server};

/// The server's URL, found (or started) once for all the tests here.
fn server_url() -> String {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| servers::postgres().map_err(|e| e.to_string())) {
        Ok(server) => server.url().to_owned(),
        Err(e) => panic!("no PostgreSQL server to test against: {e}"),
    }
}

fn config(url: &str) -> tokio_postgres::Config {
    url.parse().expect("a valid test URL")
}

/// A unique application name, so tests running at once do not see each other.
fn unique_app(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A client outside any pool, for looking at the server.
async fn admin(url: &str) -> tokio_postgres::Client {
    let mut config = config(url);
    config.application_name("pool_postgres_tests_admin");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("admin connect");
    tokio::spawn(connection);
    client
}

async fn connections_named(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("count")
        .get(0)
}

/// Whether the session is inside a transaction block: in a transaction begun by an
/// earlier statement, `now()` (its start) is before this statement's start. Asked with
/// a single-statement simple query, which is a transaction of its own otherwise.
async fn in_transaction(conn: &pool_postgres::PgConnection) -> bool {
    let messages = conn
        .client()
        .simple_query("SELECT now() <> statement_timestamp()")
        .await
        .expect("transaction check");
    messages.iter().any(|message| {
        matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
    })
}

#[tokio::test]
async fn an_unknown_database_is_named_in_the_pool_error() {
    let url = server_url();
    let mut config = config(&url);
    config.dbname("pool_postgres_no_such_db");
    let pool = Pool::builder(Manager::new(config)).build().unwrap();
    let err = pool
        .get()
        .await
        .expect_err("connected to a missing database");
    assert!(matches!(err, PoolError::Backend(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(r#"database "pool_postgres_no_such_db" does not exist"#),
        "{message}"
    );
    assert!(
        message.contains("cannot connect to postgres://"),
        "{message}"
    );
    let code = err
        .backend()
        .and_then(|e| e.as_db_error())
        .map(|db| db.code().code());
    assert_eq!(code, Some("3D000"), "{message}");
}

#[tokio::test]
async fn an_unknown_role_is_named_in_the_pool_error() {
    let url = server_url();
    let mut config = config(&url);
    config.user("pool_postgres_no_such_role");
    let pool = Pool::builder(Manager::new(config)).build().unwrap();
    let message = pool.get().await.expect_err("connected").to_string();
    // Trust auth says the role does not exist; password auth does not tell.
    assert!(
        message.contains(r#"role "pool_postgres_no_such_role" does not exist"#)
            || message.contains("password authentication failed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_named_and_the_password_is_not() {
    // Port 1 on the loopback: nothing listens there.
    let manager = Manager::from_url("postgres://app:s3cret@127.0.0.1:1/x").unwrap();
    let pool = Pool::builder(manager).build().unwrap();
    let err = pool.get().await.expect_err("connected to port 1");
    let message = err.to_string();
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(
        message.contains("postgres://app:***@127.0.0.1:1/x"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
}

#[tokio::test]
async fn bad_urls_name_the_problem_without_the_password() {
    let err = Manager::from_url("postgres://app:s3cret@db:notaport/x").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("port"), "{message}");
    assert!(
        message.contains("postgres://app:***@db:notaport/x"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    let err = Manager::from_url("host=db password=s3cret bogus_option=1").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("bogus_option"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    let manager = Manager::from_url("host=db password=s3cret user=app").unwrap();
    assert!(!format!("{manager} {manager:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_dirty_session_is_reset_on_the_same_server_connection() {
    let url = server_url();
    let app = unique_app("pool_postgres_reset");
    let mut config = config(&url);
    config.application_name(&app);
    let pool = Pool::builder(Manager::new(config))
        .max_size(1)
        .build()
        .unwrap();
    let pid: i32 = {
        let conn = pool.get().await.unwrap();
        let pid = conn
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        conn.batch_execute("SET pool_test.marker = 'dirty'")
            .await
            .unwrap();
        conn.batch_execute("CREATE TEMP TABLE pool_test_temp (x int)")
            .await
            .unwrap();
        conn.batch_execute("LISTEN pool_test_channel")
            .await
            .unwrap();
        conn.batch_execute("SELECT pg_advisory_lock(4242)")
            .await
            .unwrap();
        conn.batch_execute("PREPARE pool_test_plan AS SELECT 1")
            .await
            .unwrap();
        // A transaction left open, and failed.
        conn.batch_execute("BEGIN").await.unwrap();
        assert!(conn.batch_execute("SELECT 1/0").await.is_err());
        assert!(conn.is_dirty());
        pid
    };
    let conn = pool.get().await.unwrap();
    assert!(!conn.is_dirty());
    let row = conn
        .query_one(
            "SELECT pg_backend_pid(), \
                    coalesce(current_setting('pool_test.marker', true), ''), \
                    to_regclass('pg_temp.pool_test_temp') IS NULL, \
                    (SELECT count(*) FROM pg_listening_channels()), \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                        AND pid = pg_backend_pid()), \
                    current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        pid,
        "the connection was replaced, not reset"
    );
    assert_eq!(row.get::<_, String>(1), "", "setting survived");
    assert!(row.get::<_, bool>(2), "temp table survived");
    assert_eq!(row.get::<_, i64>(3), 0, "LISTEN survived");
    assert_eq!(row.get::<_, i64>(4), 0, "advisory lock survived");
    assert_eq!(row.get::<_, String>(5), app, "application_name was lost");
    assert!(!in_transaction(&conn).await, "still in a transaction");
    // tokio-postgres's own statements still work after the reset (no DEALLOCATE ALL).
    let stmt = conn.prepare("SELECT $1::text").await.unwrap();
    let row = conn.query_one(&stmt, &[&"still here"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "still here");
}

#[tokio::test]
async fn the_reset_query_runs_on_a_clean_session_and_in_an_open_transaction() {
    let url = server_url();
    let manager = Manager::new(config(&url));
    let conn = manager.connect().await.unwrap();
    conn.client()
        .batch_execute(pool_postgres::RESET_QUERY)
        .await
        .expect("reset on a clean session");
    conn.client()
        .batch_execute("BEGIN; SET LOCAL work_mem = '1MB'")
        .await
        .unwrap();
    assert!(
        in_transaction(&conn).await,
        "the transaction check sees nothing"
    );
    conn.client()
        .batch_execute(pool_postgres::RESET_QUERY)
        .await
        .expect("reset in an open transaction");
    assert!(
        !in_transaction(&conn).await,
        "the reset left the transaction open"
    );
}

#[tokio::test]
async fn a_cancelled_query_makes_the_connection_dirty() {
    let url = server_url();
    let manager = Manager::new(config(&url));
    let mut conn = manager.connect().await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        conn.simple_query("SELECT pg_sleep(0.5)"),
    )
    .await;
    assert!(cancelled.is_err(), "the sleep finished within 20ms");
    assert!(conn.is_dirty());
    assert_eq!(
        manager.return_state(&mut conn),
        pool_core::ReturnState::Dirty
    );
}

#[tokio::test]
async fn a_connection_killed_server_side_is_broken_and_dropping_one_closes_it() {
    let url = server_url();
    let app = unique_app("pool_postgres_kill");
    let mut config = config(&url);
    config.application_name(&app);
    let manager = Manager::new(config);
    let admin = admin(&url).await;
    let mut conn = manager.connect().await.unwrap();
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!manager.has_broken(&mut conn));
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !manager.has_broken(&mut conn) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a killed connection was not seen as broken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(conn);

    let conn = manager.connect().await.unwrap();
    assert_eq!(connections_named(&admin, &app).await, 1);
    drop(conn);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while connections_named(&admin, &app).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped connection stayed open on the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cached_statements_are_reused_and_dropped_on_reset() {
    let url = server_url();
    let pool = Pool::builder(Manager::new(config(&url)))
        .max_size(1)
        .build()
        .unwrap();
    {
        let conn = pool.get().await.unwrap();
        let first = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
        assert_eq!(conn.statement_cache_len(), 1);
        let row = conn.query_one(&first, &[&1_i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 2);
    }
    {
        let conn = pool.get().await.unwrap();
        let again = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
        assert_eq!(
            conn.statement_cache_len(),
            1,
            "the statement was prepared again"
        );
        assert_eq!(
            conn.query_one(&again, &[&2_i32])
                .await
                .unwrap()
                .get::<_, i32>(0),
            3
        );
        conn.mark_dirty();
    }
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.statement_cache_len(), 0, "the reset kept the cache");
    let fresh = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
    assert_eq!(
        conn.query_one(&fresh, &[&3_i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        4
    );
}

#[tokio::test]
async fn the_modes_decide_what_a_due_check_does() {
    let url = server_url();
    use pool_postgres::RecycleMode;
    for mode in [RecycleMode::Fast, RecycleMode::Verified, RecycleMode::Clean] {
        let pool = Pool::builder(Manager::new(config(&url)).recycle_mode(mode))
            .max_size(1)
            .check_interval(Duration::ZERO)
            .build()
            .unwrap();
        {
            let conn = pool.get().await.unwrap();
            // Through the client directly: not seen by the connection.
            conn.client()
                .batch_execute("SET pool_test.marker = 'left'")
                .await
                .unwrap();
        }
        let conn = pool.get().await.unwrap();
        let marker = conn
            .query_one(
                "SELECT coalesce(current_setting('pool_test.marker', true), '')",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0);
        let expected = if mode == RecycleMode::Clean {
            ""
        } else {
            "left"
        };
        assert_eq!(marker, expected, "{mode:?}");
    }
}

/// A server restart, on a throwaway server of its own: while the server is down no
/// `get` hangs past its bounds, and once it is back the pool serves live connections
/// again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_from_a_server_restart() {
    use std::time::Instant;

    let mut server = tokio::task::block_in_place(servers::postgres_throwaway)
        .expect("a throwaway PostgreSQL server");
    let wait = Duration::from_secs(2);
    let pool = Pool::builder(Manager::from_url(server.url()).unwrap())
        .max_size(3)
        .wait_timeout(wait)
        .connect_timeout(Duration::from_secs(2))
        .connect_backoff(Duration::from_millis(50))
        .connect_backoff_max(Duration::from_millis(500))
        .build()
        .unwrap();
    let before: Vec<i32> = {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(pool.get().await.unwrap());
        }
        let mut pids = Vec::new();
        for conn in &held {
            pids.push(
                conn.query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0),
            );
        }
        pids
    };

    tokio::task::block_in_place(|| server.stop()).expect("stopping the server");
    // Down: every attempt ends (with an error, or a connection whose query fails)
    // within its bounds, and none is served by a live server.
    for attempt in 0..5 {
        let started = Instant::now();
        let outcome = match pool.get().await {
            Ok(conn) => conn
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(
            outcome.is_err(),
            "attempt {attempt} was served while the server is down"
        );
        assert!(
            started.elapsed() < wait + Duration::from_secs(3),
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
    }

    tokio::task::block_in_place(|| server.start()).expect("starting the server again");
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(10);
    let pid: i32 = loop {
        let outcome = match pool.get().await {
            Ok(conn) => conn
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map(|row| row.get(0))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(pid) => break pid,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no live connection 10s after the restart; last error: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !before.contains(&pid),
        "served a connection from before the restart"
    );
    // Every connection the pool serves now is live.
    let mut held = Vec::new();
    for _ in 0..3 {
        let conn = pool.get().await.expect("a get after recovery");
        conn.simple_query("SELECT 1")
            .await
            .expect("a live connection after recovery");
        held.push(conn);
    }
    println!("recovered {:?} after the restart", restarted.elapsed());
}
