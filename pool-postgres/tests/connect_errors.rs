//! Connect failures name their cause, fast, and never show a password: a wrong
//! password (on a throwaway server of its own whose `pg_hba.conf` asks for one), a host
//! that accepts and never answers (caught by `connect_timeout`), and a bad URL.

use std::io::Read as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use pool_postgres::{Manager, Pool, PoolError};
use pool_testkit::servers::{self, Server};

/// The `hba` line that makes `app` log in over TCP with a password; it goes above the
/// trust lines `initdb -A trust` wrote, and the first matching line decides.
const APP_HBA_LINE: &str = "host all app 127.0.0.1/32 scram-sha-256";

/// A client outside any pool, as the trusted superuser.
async fn superuser(server: &Server) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(server.url(), tokio_postgres::NoTls)
        .await
        .expect("superuser connect");
    tokio::spawn(connection);
    client
}

/// Creates the role `app` with password `right` and makes host connections as `app`
/// authenticate with it, returning once the server asks for the password.
async fn require_password_for_app(server: &Server) {
    let client = superuser(server).await;
    client
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'right'")
        .await
        .expect("CREATE ROLE");
    let hba = server
        .dir()
        .expect("a throwaway server has a directory")
        .join("data")
        .join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
    std::fs::write(&hba, format!("{APP_HBA_LINE}\n{old}")).expect("writing pg_hba.conf");
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("pg_reload_conf");
    // The reload is a signal; wait until the postmaster has read the new file.
    let port = server.port().expect("a throwaway server's port");
    let wrong = format!("postgres://app:wrong@127.0.0.1:{port}/test");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&wrong, tokio_postgres::NoTls).await {
            Err(e) if e.as_db_error().is_some() => return,
            outcome => assert!(
                Instant::now() < deadline,
                "the server still lets `app` in without its password 10s after the \
                 reload: {:?}",
                outcome.map(|_| "connected")
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_fast_with_the_server_words_and_no_password() {
    let server = tokio::task::block_in_place(servers::postgres_throwaway)
        .expect("a throwaway PostgreSQL server");
    require_password_for_app(&server).await;
    let port = server.port().expect("a throwaway server's port");

    let manager = Manager::from_url(&format!("postgres://app:wrong@127.0.0.1:{port}/test"))
        .expect("a valid URL");
    let pool = Pool::builder(manager)
        .wait_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = pool
        .get()
        .await
        .expect_err("connected with a wrong password");
    let elapsed = started.elapsed();
    let message = err.to_string();
    assert!(
        elapsed < Duration::from_secs(2),
        "took {elapsed:?} to fail: {message}"
    );
    assert!(
        matches!(err, PoolError::Backend(_)),
        "not the driver's error: {message}"
    );
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("wrong"), "the password shows: {message}");
    assert!(
        !format!("{err:?}").contains("wrong"),
        "the password shows: {err:?}"
    );

    let manager = Manager::from_url(&format!("postgres://app:right@127.0.0.1:{port}/test"))
        .expect("a valid URL");
    let pool = Pool::builder(manager).build().unwrap();
    let conn = pool
        .get()
        .await
        .expect("connecting with the right password");
    let row = conn
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("a query as app");
    assert_eq!(row.get::<_, String>(0), "app");
}

/// A TCP listener that accepts connections and never says a word: a host that is up
/// but does not answer. Accepted sockets stay open (in a thread that lives as long as
/// the test binary), so connects neither fail nor finish.
fn blackhole() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a blackhole");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            // Drain nothing, answer nothing; just notice closed peers now and then.
            held.retain_mut(|s| {
                let _ = s.set_nonblocking(true);
                !matches!(s.read(&mut [0u8; 1024]), Ok(0))
            });
        }
    });
    port
}

/// The error of a first `get` from a pool with these bounds, which must fail (its host
/// never answers), and how long it took.
async fn first_get(
    manager: Manager,
    connect_timeout: Duration,
    wait_timeout: Duration,
) -> (PoolError, Duration) {
    let pool = Pool::builder(manager)
        .connect_timeout(connect_timeout)
        .wait_timeout(wait_timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = pool.get().await.expect_err("connected to a blackhole");
    (err, started.elapsed())
}

#[tokio::test]
async fn an_unanswering_host_fails_with_a_connect_timeout_naming_it() {
    let port = blackhole();
    let target = format!("127.0.0.1:{port}");
    let connect_timeout = Duration::from_millis(300);
    let manager =
        Manager::from_url(&format!("postgres://app:s3cret@{target}/x")).expect("a valid URL");
    let (err, elapsed) = first_get(manager, connect_timeout, Duration::from_secs(30)).await;
    let message = err.to_string();
    assert!(
        elapsed < Duration::from_secs(1),
        "took {elapsed:?} to fail (connect_timeout {connect_timeout:?}): {message}"
    );
    let PoolError::Timeout(pool_core::TimeoutKind::Connect, ctx) = &err else {
        panic!("expected a connect timeout, got: {message}");
    };
    assert_eq!(ctx.after, connect_timeout, "{message}");
    assert!(
        ctx.target.as_deref().is_some_and(|t| t.contains(&target)),
        "the timeout's target is {:?}, not {target}",
        ctx.target
    );
    assert!(message.contains(&target), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

/// The connection string's own `connect_timeout` (whole seconds, as libpq reads it)
/// bounds the whole connect, as libpq's does, not only the socket's: a host that
/// accepts and never answers fails after it, well before the pool's own bound.
#[tokio::test]
async fn the_urls_connect_timeout_bounds_the_whole_connect() {
    let port = blackhole();
    let manager = Manager::from_url(&format!(
        "postgres://app:s3cret@127.0.0.1:{port}/x?connect_timeout=1"
    ))
    .expect("a valid URL");
    let long = Duration::from_secs(60);
    let (err, elapsed) = first_get(manager, long, long).await;
    let message = err.to_string();
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} to fail: {message}"
    );
    let PoolError::Backend(backend) = &err else {
        panic!("expected the driver's timeout, got: {message}");
    };
    assert!(
        matches!(backend, pool_postgres::Error::ConnectTimedOut { after, .. } if *after == Duration::from_secs(1)),
        "{backend:?}"
    );
    assert!(message.contains("connect_timeout"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

/// A mistyped URL is named as one, with what was typed shown without the password,
/// through the manager and through a config's pool alike.
#[test]
fn a_mistyped_url_says_so_without_the_password() {
    let cases = [
        (
            "postgress://app:s3cret@db/x",
            "unsupported scheme `postgress://`",
        ),
        ("mysql://app:s3cret@db/x", "unsupported scheme `mysql://`"),
        (
            "postgres:/app:s3cret@db/x",
            "neither a `postgres://` URL nor",
        ),
        ("app:s3cret@db/x", "neither a `postgres://` URL nor"),
    ];
    for (url, says) in cases {
        let err = Manager::from_url(url).expect_err(url);
        let message = err.to_string();
        assert!(message.contains(says), "{url}: {message}");
        assert!(message.contains("@db/x"), "{url}: {message}");
        assert!(!message.contains("s3cret"), "{url}: {message}");
        assert!(!format!("{err:?}").contains("s3cret"), "{url}: {err:?}");
        let built = pool_postgres::Config::from_url(url).create_pool();
        let message = built.expect_err(url).to_string();
        assert!(message.contains(says), "{url}: {message}");
        assert!(!message.contains("s3cret"), "{url}: {message}");
    }
}

#[test]
fn a_bad_url_names_the_problem_without_the_password() {
    let err = Manager::from_url("postgres://u:secret@host:notaport/db")
        .expect_err("a port that is not a number");
    let message = err.to_string();
    assert!(message.contains("port"), "{message}");
    assert!(message.contains("notaport"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(!format!("{err:?}").contains("secret"), "{err:?}");
}
