//! The driver against a real MySQL or MariaDB server, from
//! `pool_testkit::servers::mysql()`: the URL in `POOL_TEST_MYSQL_URL`, else the server on
//! 127.0.0.1:3306, else a throwaway server started for this test binary.

use std::sync::OnceLock;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use pool_core::Manager as _;
use pool_mysql::{ConnectFailure, Manager, Pool, PoolError, RecycleMode};
use pool_testkit::servers::{self, Server};

/// The server's URL, found (or started) once for all the tests here.
fn server_url() -> String {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| servers::mysql().map_err(|e| e.to_string())) {
        Ok(server) => server.url().to_owned(),
        Err(e) => panic!("no MySQL/MariaDB server to test against: {e}"),
    }
}

/// The test server's URL with its database replaced.
fn url_with_db(db: &str) -> String {
    let opts = Opts::from_url(&server_url()).unwrap();
    let mut url = String::from("mysql://");
    if let Some(user) = opts.user() {
        url.push_str(user);
        if let Some(pass) = opts.pass() {
            url.push(':');
            url.push_str(pass);
        }
        url.push('@');
    }
    url.push_str(&format!(
        "{}:{}/{db}",
        opts.ip_or_hostname(),
        opts.tcp_port()
    ));
    url
}

/// A connection outside any pool, for looking at the server.
async fn admin() -> Conn {
    Conn::from_url(server_url()).await.expect("admin connect")
}

/// Whether connection `id` is still on the server.
async fn exists(admin: &mut Conn, id: u32) -> bool {
    let n: Option<u64> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await
        .unwrap();
    n == Some(1)
}

/// Waits up to 10 s for connection `id` to leave the server.
async fn wait_gone(admin: &mut Conn, id: u32) -> bool {
    for _ in 0..1000 {
        if !exists(admin, id).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn pool(manager: Manager, max_size: usize) -> Pool {
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

#[tokio::test]
async fn an_unknown_database_is_named_in_the_pool_error() {
    let pool = pool(
        Manager::from_url(&url_with_db("pool_mysql_no_such_db")).unwrap(),
        1,
    );
    let err = pool.get().await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("unknown database"), "{shown}");
    assert!(
        shown.contains("Unknown database 'pool_mysql_no_such_db'"),
        "{shown}"
    );
    let PoolError::Backend(backend) = &err else {
        panic!("not the driver's error: {err}");
    };
    assert_eq!(
        backend.connect_failure(),
        Some(ConnectFailure::UnknownDatabase)
    );
    assert_eq!(backend.as_server_error().map(|e| e.code), Some(1049));
}

#[tokio::test]
async fn an_unknown_user_is_denied_and_the_password_is_not_shown() {
    let opts = Opts::from_url(&server_url()).unwrap();
    let url = format!(
        "mysql://pool_mysql_nobody:s3cret@{}:{}/test",
        opts.ip_or_hostname(),
        opts.tcp_port()
    );
    let pool = pool(Manager::from_url(&url).unwrap(), 1);
    let err = pool.get().await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("access denied"), "{shown}");
    assert!(
        shown.contains("Access denied for user 'pool_mysql_nobody'"),
        "{shown}"
    );
    assert!(shown.contains("pool_mysql_nobody:***@"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!format!("{err:?}").contains("s3cret"));
    assert_eq!(
        err.backend().and_then(|e| e.connect_failure()),
        Some(ConnectFailure::AccessDenied)
    );
}

#[tokio::test]
async fn a_refused_connection_is_named_and_fails_fast() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("mysql://app:s3cret@127.0.0.1:{port}/x");
    let pool = Pool::builder(Manager::from_url(&url).unwrap())
        .wait_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let shown = err.to_string();
    assert!(shown.contains("connection refused"), "{shown}");
    assert!(
        shown.contains(&format!("mysql://app:***@127.0.0.1:{port}/x")),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert_eq!(
        err.backend().and_then(|e| e.connect_failure()),
        Some(ConnectFailure::Refused)
    );
}

#[tokio::test]
async fn bad_urls_name_the_problem_without_the_password() {
    for (url, problem) in [
        ("mysql://app:s3cret@db:port/x", "port"),
        ("postgres://app:s3cret@db/x", "scheme"),
        ("mysql://app:s3cret@db/x?no_such_option=1", "no_such_option"),
        ("not a url at all s3cret", "URL"),
    ] {
        let err = Manager::from_url(url).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(problem), "{url}: {shown}");
        assert!(!shown.contains("s3cret"), "{url}: {shown}");
        assert_eq!(err.field(), "url");
    }
}

/// Every kind of session state the issue names, left behind on one connection, is gone
/// for the next user of the same server connection.
#[tokio::test]
async fn a_dirty_session_is_reset_on_the_same_server_connection() {
    let pool = pool(Manager::from_url(&server_url()).unwrap(), 1);
    let lock = format!("pool_mysql_lock_{}", std::process::id());
    let first = {
        let mut conn = pool.get().await.unwrap();
        conn.query_drop("CREATE TEMPORARY TABLE pool_mysql_tmp (x INT)")
            .await
            .unwrap();
        conn.query_drop("SET @pool_mysql_marker = 1").await.unwrap();
        conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
            .await
            .unwrap();
        let got: Option<i64> = conn
            .query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
            .await
            .unwrap();
        assert_eq!(got, Some(1));
        conn.query_drop("USE information_schema").await.unwrap();
        conn.query_drop("START TRANSACTION").await.unwrap();
        assert!(conn.is_dirty());
        conn.id()
    };
    // The lock is held while the connection sits dirty... until upkeep or the next
    // checkout resets it.
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        conn.id(),
        first,
        "the dirty connection was replaced, not reset"
    );
    assert!(!conn.is_dirty());
    let raw = conn.conn_mut();
    let state: Option<(i64, Option<i64>, String, Option<String>)> = raw
        .query_first("SELECT @@in_transaction, @pool_mysql_marker, @@session.sql_mode, DATABASE()")
        .await
        .unwrap();
    let (in_transaction, marker, sql_mode, db) = state.unwrap();
    assert_eq!(in_transaction, 0);
    assert_eq!(marker, None);
    assert!(!sql_mode.contains("ANSI_QUOTES"), "{sql_mode}");
    assert_eq!(
        db.as_deref(),
        Opts::from_url(&server_url()).unwrap().db_name()
    );
    let temp: Result<Vec<i64>, _> = raw.query("SELECT x FROM pool_mysql_tmp").await;
    assert!(temp.is_err(), "the temporary table survived the reset");
    let free: Option<i64> = admin()
        .await
        .query_first(format!("SELECT IS_FREE_LOCK('{lock}')"))
        .await
        .unwrap();
    assert_eq!(free, Some(1), "the user lock survived the reset");
}

/// A transaction opened through the `Conn` itself (here mysql_async's `Transaction`,
/// dropped without commit) is seen through the server's status flags.
#[tokio::test]
async fn a_transaction_opened_behind_the_pools_back_is_seen_and_rolled_back() {
    let pool = pool(Manager::from_url(&server_url()).unwrap(), 1);
    {
        let mut conn = pool.get().await.unwrap();
        let mut tx = conn
            .conn_mut()
            .start_transaction(Default::default())
            .await
            .unwrap();
        tx.query_drop("SELECT 1").await.unwrap();
        drop(tx);
        assert!(conn.is_dirty());
    }
    {
        let mut conn = pool.get().await.unwrap();
        conn.conn_mut().query_drop("BEGIN").await.unwrap();
        assert!(conn.is_dirty(), "BEGIN through the Conn was not seen");
    }
    let mut conn = pool.get().await.unwrap();
    let open: Option<i64> = conn
        .conn_mut()
        .query_first("SELECT @@in_transaction")
        .await
        .unwrap();
    assert_eq!(open, Some(0));
}

/// A query dropped before its reply was read leaves the protocol mid-reply: the
/// connection is discarded, never handed out again, and closed on the server.
#[tokio::test]
async fn a_cancelled_query_discards_the_connection() {
    let pool = pool(Manager::from_url(&server_url()).unwrap(), 1);
    let mut admin = admin().await;
    let cancelled = {
        let mut conn = pool.get().await.unwrap();
        let id = conn.id();
        let slow = conn.query_drop("SELECT SLEEP(1)");
        assert!(tokio::time::timeout(Duration::from_millis(100), slow)
            .await
            .is_err());
        assert!(conn.is_closed());
        id
    };
    assert_eq!(pool.status().size, 0, "the cancelled connection was kept");
    let mut conn = pool.get().await.unwrap();
    assert_ne!(conn.id(), cancelled);
    assert_eq!(
        conn.query_first::<i64, _>("SELECT 1").await.unwrap(),
        Some(1)
    );
    // The server finishes the sleep and then notices the client is gone.
    assert!(wait_gone(&mut admin, cancelled).await);
}

#[tokio::test]
async fn a_connection_killed_server_side_is_broken_and_dropping_one_closes_it() {
    let manager = Manager::from_url(&server_url()).unwrap();
    let mut admin = admin().await;
    let mut conn = manager.connect().await.unwrap();
    let id = conn.id();
    admin.query_drop(format!("KILL {id}")).await.unwrap();
    assert!(wait_gone(&mut admin, id).await);
    assert!(conn.query_first::<i64, _>("SELECT 1").await.is_err());
    assert!(manager.has_broken(&mut conn));

    let conn = manager.connect().await.unwrap();
    let id = conn.id();
    assert!(exists(&mut admin, id).await);
    drop(conn);
    assert!(
        wait_gone(&mut admin, id).await,
        "a dropped connection stayed open"
    );
}

/// `Fast` makes no round trip, `Verified` pings, `Clean` resets every reuse (even after
/// a statement run through the `Conn`, which the pool cannot see).
#[tokio::test]
async fn the_modes_decide_what_a_due_check_does() {
    let opts = Opts::from_url(&server_url()).unwrap();
    let info_pool = |mode| {
        Pool::builder(Manager::new(opts.clone()).recycle_mode(mode))
            .max_size(1)
            .check_interval(Duration::ZERO)
            .build()
            .unwrap()
    };
    for (mode, reset) in [
        (RecycleMode::Fast, false),
        (RecycleMode::Verified, false),
        (RecycleMode::Clean, true),
    ] {
        let pool = info_pool(mode);
        {
            let mut conn = pool.get().await.unwrap();
            conn.conn_mut().query_drop("SET @unseen = 1").await.unwrap();
            assert!(!conn.is_dirty());
        }
        let mut conn = pool.get().await.unwrap();
        let unseen: Option<Option<i64>> =
            conn.conn_mut().query_first("SELECT @unseen").await.unwrap();
        assert_eq!(unseen.flatten().is_none(), reset, "{mode:?}");
    }
}

/// A result left unread (a `query_iter` dropped before its rows were read) is not
/// mistaken for the answer to the next check (a `COM_PING` on every checkout here):
/// mysql_async drains it before any command, and each user reads its own answers.
#[tokio::test]
async fn an_unread_result_never_confuses_the_next_user() {
    let pool = Pool::builder(Manager::from_url(&server_url()).unwrap())
        .max_size(1)
        .check_interval(Duration::ZERO)
        .build()
        .unwrap();
    {
        let mut conn = pool.get().await.unwrap();
        let result = conn
            .conn_mut()
            .query_iter("SELECT seq FROM seq_1_to_1000")
            .await;
        match result {
            Ok(result) => drop(result),
            // Not MariaDB (no sequence engine): any large enough result does.
            Err(_) => drop(
                conn.conn_mut()
                    .query_iter("SELECT * FROM information_schema.COLUMNS")
                    .await
                    .unwrap(),
            ),
        }
    }
    for n in 40..44_i64 {
        let mut conn = pool.get().await.unwrap();
        let answer: Option<i64> = conn.query_first(format!("SELECT {n}")).await.unwrap();
        assert_eq!(answer, Some(n));
    }
}

#[tokio::test]
async fn an_unknown_host_is_named() {
    let manager =
        Manager::from_url("mysql://app:s3cret@pool-mysql-no-such-host.invalid/x").unwrap();
    let err = match tokio::time::timeout(Duration::from_secs(20), manager.connect()).await {
        Ok(Err(err)) => err,
        Ok(Ok(_)) => panic!("connected to a host that does not exist"),
        // No resolver answers here at all: nothing to check.
        Err(_) => return,
    };
    let shown = pool_core::PoolError::Backend(err).to_string();
    assert!(shown.contains("unknown host"), "{shown}");
    assert!(shown.contains("pool-mysql-no-such-host.invalid"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// With `Queryable` in scope (it is, in this file), a pooled connection's
/// `query_drop` is still this crate's, which sees what the SQL does.
#[tokio::test]
async fn the_connections_own_methods_win_over_queryables() {
    let pool = pool(Manager::from_url(&server_url()).unwrap(), 1);
    let mut conn = pool.get().await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();
    assert!(!conn.is_dirty());
    conn.query_drop("SET @seen = 1").await.unwrap();
    assert!(conn.is_dirty());
}
