//! The driver behind PgBouncer in `pool_mode = transaction`: a throwaway PgBouncer
//! (`pool_testkit::servers::pgbouncer`, Debian's 1.18 here) in front of the test server
//! from `pool_testkit::servers::postgres()`, one per test.
//!
//! What it proves: in `StatementMode::Unnamed` concurrent clients' queries all succeed
//! through the transaction pooler, while in the default named mode the same load fails
//! (so the mode is what makes the difference); parameters are declared with types the
//! server takes; and the reset behind a transaction pooler rolls back what was left
//! open without wiping the parameters PgBouncer keeps per client, as the named mode's
//! full reset does.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use pool_postgres::{
    Manager, PgConnection, Pool, StatementMode, RESET_QUERY, TRANSACTION_POOLER_RESET_QUERY,
};
use pool_testkit::servers::{self, PgBouncer, Server};
use tokio_postgres::SimpleQueryMessage;

/// The load: 20 concurrent clients, 50 queries each.
const CLIENTS: usize = 20;
const QUERIES: usize = 50;

/// The upstream server's URL, found (or started) once for all the tests here.
fn upstream() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(|| servers::postgres().map_err(|e| e.to_string())) {
        Ok(server) => server,
        Err(e) => panic!("no PostgreSQL server to test against: {e}"),
    }
}

/// A new PgBouncer in front of the test server. Blocks: call it from a multi-thread
/// runtime's `block_in_place`, as [`start_bouncer`] does.
fn start_bouncer() -> PgBouncer {
    tokio::task::block_in_place(|| {
        servers::pgbouncer(upstream()).unwrap_or_else(|e| panic!("a PgBouncer: {e}"))
    })
}

/// Stops the PgBouncer off the runtime's async path.
fn stop_bouncer(bouncer: PgBouncer) {
    tokio::task::block_in_place(|| drop(bouncer));
}

/// A unique application name, so tests running at once do not see each other.
fn unique_app(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A manager for PgBouncer's client URL in `mode`, naming its connections `app`.
fn manager(bouncer: &PgBouncer, mode: StatementMode, app: &str) -> Manager {
    let mut config: tokio_postgres::Config = bouncer.url().parse().expect("PgBouncer's URL");
    config.application_name(app);
    Manager::new(config).statement_mode(mode)
}

/// A plain client of `url`, outside any pool.
async fn client(url: &str, app: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("a URL");
    config.application_name(app);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The first column of the first row of a simple query's answer.
async fn first_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql} returned no row"))
}

/// The `application_name` column of PgBouncer's `SHOW CLIENTS`, for the clients of the
/// test database.
async fn client_application_names(console: &tokio_postgres::Client, database: &str) -> Vec<String> {
    let messages = console
        .simple_query("SHOW CLIENTS")
        .await
        .expect("SHOW CLIENTS");
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) if row.get("database") == Some(database) => {
                Some(row.get("application_name").unwrap_or("").to_owned())
            }
            _ => None,
        })
        .collect()
}

/// What the concurrent load saw.
struct Load {
    succeeded: usize,
    failed: usize,
    /// One failure message of each kind.
    failures: Vec<String>,
}

/// [`CLIENTS`] pooled connections at once, each running [`QUERIES`] queries through
/// `PgConnection::query`, all starting together. Every answer is checked.
async fn run_load(manager: Manager) -> Load {
    let pool = Pool::builder(manager)
        .max_size(CLIENTS)
        .wait_timeout(Duration::from_secs(30))
        .build()
        .expect("a pool");
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (pool, start) = (pool.clone(), Arc::clone(&start));
        tasks.spawn(async move {
            let conn = pool.get().await.expect("a connection through PgBouncer");
            start.wait().await;
            let mut outcomes = Vec::with_capacity(QUERIES);
            for query in 0..QUERIES {
                let (a, b) = (client as i32, query as i32);
                let outcome = match conn
                    .query("SELECT $1::int4 * 1000 + $2::int4", &[&a, &b])
                    .await
                {
                    Ok(rows) => {
                        let got: i32 = rows[0].get(0);
                        assert_eq!(got, a * 1000 + b, "a wrong answer through PgBouncer");
                        Ok(())
                    }
                    Err(e) => Err(e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |db| db.message().to_owned())),
                };
                outcomes.push(outcome);
            }
            outcomes
        });
    }
    let mut load = Load {
        succeeded: 0,
        failed: 0,
        failures: Vec::new(),
    };
    while let Some(joined) = tasks.join_next().await {
        for outcome in joined.expect("a client task") {
            match outcome {
                Ok(()) => load.succeeded += 1,
                Err(message) => {
                    load.failed += 1;
                    // `prepared statement "s17" does not exist` is one kind, whatever
                    // the number.
                    let kind: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
                    if !load.failures.iter().any(|seen| {
                        seen.chars()
                            .filter(|c| !c.is_ascii_digit())
                            .collect::<String>()
                            == kind
                    }) {
                        load.failures.push(message);
                    }
                }
            }
        }
    }
    load
}

/// The finding, and the fix: through PgBouncer 1.18 in transaction mode,
/// `query()` with named statements fails for many of 1,000 queries from 20 concurrent
/// clients (`prepared statement "sN" does not exist`), and every one of them succeeds
/// in unnamed mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_querying_through_pgbouncer_need_unnamed_statements() {
    let bouncer = start_bouncer();
    let app = unique_app("pool_pgbouncer_load");

    let unnamed = run_load(manager(&bouncer, StatementMode::Unnamed, &app)).await;
    let named = run_load(manager(&bouncer, StatementMode::Named, &app)).await;
    eprintln!(
        "through PgBouncer (pool_mode = transaction, default_pool_size {}), {CLIENTS} \
         clients x {QUERIES} queries: unnamed {} ok / {} failed; named {} ok / {} failed \
         ({:?})",
        servers::pgbouncer::POOL_SIZE,
        unnamed.succeeded,
        unnamed.failed,
        named.succeeded,
        named.failed,
        named.failures
    );
    stop_bouncer(bouncer);

    assert_eq!(
        (unnamed.succeeded, unnamed.failed),
        (CLIENTS * QUERIES, 0),
        "unnamed statements failed through PgBouncer: {:?}",
        unnamed.failures
    );
    assert_eq!(named.succeeded + named.failed, CLIENTS * QUERIES);
    assert!(
        named.failed > 0,
        "named statements all succeeded through PgBouncer in transaction mode: the load \
         did not show what the mode is for"
    );
    for message in &named.failures {
        assert!(
            message.starts_with("prepared statement \"s") && message.ends_with("does not exist"),
            "named mode failed for another reason than a statement lost between server \
             connections: {message}"
        );
    }
}

/// Unnamed statements declare each parameter's type themselves; the server converts
/// from those where the query wants another, and `execute` counts rows as in named
/// mode. `prepare_cached` caches nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_carry_parameters_of_the_common_types() {
    let bouncer = start_bouncer();
    let pool = Pool::builder(manager(
        &bouncer,
        StatementMode::Unnamed,
        &unique_app("pool_pgbouncer_types"),
    ))
    .max_size(1)
    .build()
    .unwrap();
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.statement_mode(), StatementMode::Unnamed);

    let name = String::from("bouncer");
    let row = conn
        .query_one(
            "SELECT $1::varchar || '!', $2 + 1, $3 IS NULL, array_length($4, 1), \
             $5 = '\\x0102'::bytea, $6, $7",
            &[
                &name,
                &41_i64,
                &None::<i32>,
                &vec!["a".to_owned(), "b".to_owned()],
                &vec![1_u8, 2],
                &true,
                &2.5_f64,
            ],
        )
        .await
        .expect("a query with parameters of several types");
    assert_eq!(row.get::<_, String>(0), "bouncer!");
    assert_eq!(row.get::<_, i64>(1), 42);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, i32>(3), 2);
    assert!(row.get::<_, bool>(4));
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, f64>(6), 2.5);

    // An int4 column compared with an int8 parameter, a text parameter into a varchar.
    let matching = conn
        .query(
            "SELECT x FROM (VALUES (1::int4), (2), (3)) AS t(x) WHERE x >= $1",
            &[&2_i64],
        )
        .await
        .unwrap();
    assert_eq!(matching.len(), 2);
    let opt = conn
        .query_opt("SELECT $1::text WHERE $2", &[&"x", &false])
        .await
        .unwrap();
    assert!(opt.is_none());
    let rows = conn
        .execute("SELECT generate_series(1, $1)", &[&3_i32])
        .await
        .unwrap();
    assert_eq!(rows, 3);
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let epoch: f64 = conn
        .query_one("SELECT extract(epoch FROM $1)::float8", &[&when])
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 1_700_000_000.0);

    // A value only a type defined in the database accepts cannot be declared: the
    // error names its Rust type, and nothing reached the server.
    let err = conn
        .query("SELECT $1::mood", &[&Mood])
        .await
        .expect_err("a parameter without a built-in type was sent");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause
            .as_deref()
            .is_some_and(|cause| cause.contains("Mood") && cause.contains("unknown")),
        "{err}: {cause:?}"
    );
    assert!(!conn.is_closed());
    assert_eq!(first_value(conn.client(), "SELECT 1").await, "1");

    conn.prepare_cached("SELECT 1").await.unwrap();
    assert_eq!(
        conn.statement_cache_len(),
        0,
        "unnamed mode cached a statement"
    );
    drop(conn);
    drop(pool);
    stop_bouncer(bouncer);
}

/// A Rust type for a database enum `mood`, as a derive would write it.
#[derive(Debug)]
struct Mood;

impl tokio_postgres::types::ToSql for Mood {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(b"happy");
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "mood"
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Whether the session is inside a transaction block (see the plain server tests).
async fn in_transaction(conn: &PgConnection) -> bool {
    first_value(conn.client(), "SELECT now() <> statement_timestamp()").await == "t"
}

/// Behind the transaction pooler a connection returned with a transaction open is
/// rolled back before its next user gets it (the open transaction is the state a
/// client of a transaction pooler owns), and keeps the `application_name` PgBouncer
/// holds for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_is_rolled_back_and_the_client_keeps_its_name() {
    let bouncer = start_bouncer();
    let app = unique_app("pool_pgbouncer_reset");
    let console = client(bouncer.admin_url(), "pool_pgbouncer_console").await;
    let pool = Pool::builder(manager(&bouncer, StatementMode::Unnamed, &app))
        .max_size(1)
        .build()
        .unwrap();
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("BEGIN; SET LOCAL statement_timeout = '1234s'")
            .await
            .unwrap();
        assert!(in_transaction(&conn).await);
        assert!(conn.is_dirty());
    }
    let conn = pool.get().await.unwrap();
    assert!(
        !in_transaction(&conn).await,
        "the transaction was left open"
    );
    assert_ne!(
        first_value(conn.client(), "SHOW statement_timeout").await,
        "1234s"
    );
    assert_eq!(
        first_value(conn.client(), "SHOW application_name").await,
        app
    );
    let names = client_application_names(&console, bouncer.database()).await;
    assert_eq!(names, [app.as_str()], "PgBouncer's clients: {names:?}");
    drop(conn);
    drop(pool);
    drop(console);
    stop_bouncer(bouncer);
}

/// Why the named mode's reset is not used behind a transaction pooler: its `RESET ALL`
/// runs on whichever server connection PgBouncer lends, and PgBouncer then takes the
/// server's defaults as the client's own parameters, so the client loses its
/// `application_name` for good. `ROLLBACK` alone leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_reset_would_wipe_what_pgbouncer_keeps_per_client() {
    let bouncer = start_bouncer();
    let app = unique_app("pool_pgbouncer_full_reset");
    let plain = client(bouncer.url(), &app).await;
    plain
        .batch_execute(TRANSACTION_POOLER_RESET_QUERY)
        .await
        .unwrap();
    assert_eq!(first_value(&plain, "SHOW application_name").await, app);
    plain.batch_execute(RESET_QUERY).await.unwrap();
    let after = first_value(&plain, "SHOW application_name").await;
    assert_ne!(
        after, app,
        "RESET ALL through PgBouncer kept the client's name"
    );
    drop(plain);
    stop_bouncer(bouncer);
}
