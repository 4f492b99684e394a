//! `pool_testkit::servers` against the real server binaries: a throwaway server of each
//! database starts, answers its command-line client over TCP, stops (port closed),
//! starts again, and on drop leaves no process and no directory behind.
//!
//! A missing binary fails the test with the package to install: these tests never skip.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use pool_testkit::servers::{self, Database, Server, ServerError, Source};

/// A throwaway server's whole life must fit in this (it takes about a second).
const LIFE_BOUND: Duration = Duration::from_secs(20);

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A trivial command through the database's own client, over TCP; its output.
fn client_round_trip(server: &Server) -> String {
    let port = server
        .port()
        .expect("a local server has a port")
        .to_string();
    let mut command = match server.database() {
        Database::Postgres => {
            let mut command = Command::new("psql");
            command.args(["-X", "-A", "-t", "-d", server.url(), "-c", "select 1"]);
            command
        }
        Database::Mysql => {
            let mut command = Command::new("mariadb");
            command.args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P"]);
            command.args([&port, "-u", "root", "-N", "-B", "test", "-e", "select 1"]);
            command
        }
        Database::Redis => {
            let mut command = Command::new("redis-cli");
            command.args(["-h", "127.0.0.1", "-p", &port, "ping"]);
            command
        }
    };
    let out = command.output().expect("the client runs");
    assert!(
        out.status.success(),
        "{} client failed: {}",
        server.database(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn expected_answer(database: Database) -> &'static str {
    match database {
        Database::Postgres | Database::Mysql => "1",
        Database::Redis => "PONG",
    }
}

/// `pid` and all its descendants (PostgreSQL's backends, checkpointer, ...).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let out = Command::new("pgrep")
            .args(["-P", &tree[i].to_string()])
            .output()
            .expect("pgrep runs");
        tree.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok()),
        );
        i += 1;
    }
    tree
}

/// Whether `pid` runs: it exists and is not a zombie waiting for its parent (or, for
/// an orphan, init) to reap it.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap_or(0)..].starts_with(") Z"),
        Err(_) => false,
    }
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the `(name)`).
fn parent(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process exists");
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 1..];
    after_name
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits up to `bound` for every pid in `pids` to be gone; those still alive.
fn wait_gone(pids: &[u32], bound: Duration) -> Vec<u32> {
    let deadline = Instant::now() + bound;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn throwaway_life(database: Database) {
    let began = Instant::now();
    let mut server = servers::throwaway(database).unwrap_or_else(|e| panic!("{e}"));
    let first_start = began.elapsed();
    assert!(server.is_throwaway());
    assert_eq!(server.source(), Source::Throwaway);
    assert!(server.is_running());
    let port = server.port().unwrap();
    let dir = server.dir().unwrap().to_owned();
    assert!(dir.is_dir());
    let url = server.url().to_owned();
    assert!(url.contains(&format!("127.0.0.1:{port}")), "{url}");
    assert!(!url.contains(":***@"));
    assert_eq!(client_round_trip(&server), expected_answer(database));

    let t = Instant::now();
    server.stop().unwrap_or_else(|e| panic!("{e}"));
    let stop = t.elapsed();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(
        !port_open(port),
        "{database}: port {port} still open after stop"
    );
    server
        .stop()
        .expect("stopping a stopped server does nothing");

    let t = Instant::now();
    server.start().unwrap_or_else(|e| panic!("{e}"));
    let restart = t.elapsed();
    assert_eq!(server.port(), Some(port));
    assert_eq!(server.url(), url);
    assert!(port_open(port));
    // The data survived: the database `test` is still there.
    assert_eq!(client_round_trip(&server), expected_answer(database));

    // The server, its children, and its watchdog shell (the server's parent, our
    // child) with the shell's own watcher.
    let watchdog = parent(server.pid().unwrap());
    assert_eq!(parent(watchdog), std::process::id());
    let pids = process_tree(watchdog);
    assert!(pids.len() >= 3, "{database}: {pids:?}");
    let t = Instant::now();
    drop(server);
    let dropped = t.elapsed();
    let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    assert!(
        left.is_empty(),
        "{database}: processes left after drop: {left:?}"
    );
    assert!(
        !dir.exists(),
        "{database}: {} left after drop",
        dir.display()
    );
    assert!(!port_open(port));

    let life = began.elapsed();
    eprintln!(
        "{database}: first start (init + start + ready) {first_start:.2?}, stop {stop:.2?}, \
         restart {restart:.2?}, drop {dropped:.2?}, whole test {life:.2?} ({} processes)",
        pids.len()
    );
    assert!(life < LIFE_BOUND, "{database}: took {life:?}");
}

#[test]
fn postgres_throwaway_starts_stops_restarts_and_cleans_up() {
    throwaway_life(Database::Postgres);
}

#[test]
fn mysql_throwaway_starts_stops_restarts_and_cleans_up() {
    throwaway_life(Database::Mysql);
}

#[test]
fn redis_throwaway_starts_stops_restarts_and_cleans_up() {
    throwaway_life(Database::Redis);
}

/// Set in the environment of the helper process below.
const HELPER_ENV: &str = "POOL_TESTKIT_SERVERS_EXIT_HELPER";

/// Only does something in the helper process `the_server_stops_when_the_test_process_dies`
/// starts: there it starts a throwaway server, prints its pid and directory, and exits
/// without dropping it.
#[test]
fn exit_helper_leaves_its_server_behind() {
    let Ok(which) = std::env::var(HELPER_ENV) else {
        return;
    };
    let database = match which.as_str() {
        "postgres" => Database::Postgres,
        "mysql" => Database::Mysql,
        _ => Database::Redis,
    };
    let server = servers::throwaway(database).unwrap_or_else(|e| panic!("{e}"));
    let pids = process_tree(parent(server.pid().unwrap()));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("pids {}", pids.join(" "));
    println!("port {}", server.port().unwrap());
    println!("dir {}", server.dir().unwrap().display());
    std::process::exit(0);
}

/// A server whose test process ends without dropping it (a `static`, `process::exit`,
/// a crash) still stops: its watchdog sees the pipe from the test process close.
#[test]
fn the_server_stops_when_the_test_process_dies() {
    for database in ["postgres", "mysql", "redis"] {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "exit_helper_leaves_its_server_behind",
                "--nocapture",
            ])
            .env(HELPER_ENV, database)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_else(|| {
                    panic!(
                        "{database}: no `{name}` from the helper: {stdout}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
                .trim()
                .to_owned()
        };
        let pids: Vec<u32> = field("pids ")
            .split_whitespace()
            .map(|pid| pid.parse().unwrap())
            .collect();
        let port: u16 = field("port ").parse().unwrap();
        let dir = field("dir ");
        let began = Instant::now();
        let left = wait_gone(&pids, Duration::from_secs(10));
        let stopped = began.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(left.is_empty(), "{database}: still running: {left:?}");
        assert!(!port_open(port));
        eprintln!("{database}: gone {stopped:.2?} after its test process exited");
    }
}

#[test]
fn the_named_throwaway_functions_start_their_database() {
    for (database, make) in [
        (Database::Postgres, servers::postgres_throwaway as fn() -> _),
        (Database::Mysql, servers::mysql_throwaway),
        (Database::Redis, servers::redis_throwaway),
    ] {
        let server: Server = make().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server.database(), database);
        assert!(server.is_throwaway());
        assert_eq!(client_round_trip(&server), expected_answer(database));
    }
}

#[test]
fn the_environment_url_wins_and_is_not_stoppable() {
    let url = "postgres://app:s3cret@db.invalid:5433/x";
    let mut server = servers::shared(Database::Postgres, Some(url)).unwrap();
    assert_eq!(server.url(), url);
    assert_eq!(server.source(), Source::Env);
    assert!(!server.is_throwaway());
    assert_eq!(server.port(), None);
    let shown = format!("{server:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db.invalid:5433/x"),
        "{shown}"
    );
    let error = server.stop().unwrap_err();
    assert!(matches!(error, ServerError::NotThrowaway { .. }), "{error}");
    assert!(server.start().is_err());

    for database in Database::ALL {
        let server = servers::shared(database, Some(" redis://elsewhere:1 ")).unwrap();
        assert_eq!(server.url(), "redis://elsewhere:1");
    }
}

/// Without an environment URL (or a blank one) the lookup gives a server that works:
/// the one on the default port where there is one, else a throwaway one.
#[test]
fn the_lookup_without_an_environment_url_gives_a_working_server() {
    for database in Database::ALL {
        let began = Instant::now();
        let server = servers::shared(database, Some("  ")).unwrap_or_else(|e| panic!("{e}"));
        let found = began.elapsed();
        assert_ne!(server.source(), Source::Env);
        assert_eq!(client_round_trip(&server), expected_answer(database));
        eprintln!(
            "{database}: {:?} {:?} in {found:.2?}",
            server.source(),
            server.url()
        );
    }
}

#[test]
fn a_missing_binary_names_the_package() {
    let error = ServerError::MissingBinary {
        database: Database::Postgres,
        binary: "initdb",
        looked_in: "/usr/lib/postgresql/*/bin".into(),
        package: "postgresql",
    };
    let message = error.to_string();
    assert!(message.contains("`initdb`"), "{message}");
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("POOL_TEST_POSTGRES_URL"), "{message}");
    for database in Database::ALL {
        assert!(!database.package().is_empty());
        assert!(database.env_var().starts_with("POOL_TEST_"));
    }
}

/// `psql -X -A -t -d URL -c SQL` (unaligned, tuples only): its output.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", url, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {url} -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PgBouncer in front of the test server (the shared one or a throwaway one) and in
/// front of a throwaway one: clients get through it to the upstream database, its admin
/// console answers and says it pools by transaction, it stops (port closed) and starts
/// again on the same port, and drop leaves no process and no directory behind.
#[test]
fn pgbouncer_in_front_of_postgres_answers_stops_restarts_and_cleans_up() {
    let shared = servers::postgres().unwrap_or_else(|e| panic!("{e}"));
    let throwaway = servers::postgres_throwaway().unwrap_or_else(|e| panic!("{e}"));
    for upstream in [&shared, &throwaway] {
        let began = Instant::now();
        let mut bouncer = servers::pgbouncer(upstream).unwrap_or_else(|e| panic!("{e}"));
        let started = began.elapsed();
        let port = bouncer.port();
        assert_ne!(Some(port), upstream.port());
        assert!(
            bouncer.url().contains(&format!("@127.0.0.1:{port}/")),
            "{bouncer:?}"
        );
        let database = bouncer.database().to_owned();
        assert_eq!(psql(bouncer.url(), "select current_database()"), database);

        let console = bouncer.admin_url().to_owned();
        assert!(
            console.contains(servers::pgbouncer::ADMIN_USER),
            "{console}"
        );
        let version = psql(&console, "SHOW VERSION");
        assert!(version.starts_with("PgBouncer 1."), "{version}");
        let config = psql(&console, "SHOW CONFIG");
        assert!(
            config
                .lines()
                .any(|line| line.starts_with("pool_mode|transaction|")),
            "{config}"
        );
        // The client psql just closed is gone; the console's own connection is there.
        let clients = psql(&console, "SHOW CLIENTS");
        assert!(
            clients
                .lines()
                .all(|line| !line.contains(&format!("|{database}|"))),
            "{clients}"
        );

        bouncer.stop().unwrap_or_else(|e| panic!("{e}"));
        assert!(!bouncer.is_running());
        assert!(!port_open(port), "port {port} still open after stop");
        bouncer.start().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bouncer.port(), port);
        assert_eq!(psql(bouncer.url(), "select 1"), "1");

        let watchdog = parent(bouncer.pid().unwrap());
        assert_eq!(parent(watchdog), std::process::id());
        let pids = process_tree(watchdog);
        let dir = bouncer.dir().to_owned();
        drop(bouncer);
        let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
        assert!(
            left.is_empty(),
            "PgBouncer processes left after drop: {left:?}"
        );
        assert!(!dir.exists(), "{} left after drop", dir.display());
        assert!(!port_open(port));
        eprintln!(
            "PgBouncer in front of {:?} ({:?}): started in {started:.2?}, whole life {:.2?}",
            upstream.url(),
            upstream.source(),
            began.elapsed()
        );
    }
}

/// A `Server` can live in a `static` or move into `spawn_blocking`.
#[test]
fn server_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Server>();
    send_sync::<ServerError>();
}

/// `redis-cli` against one node of a cluster; `-c` follows the cluster's redirects.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-c", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli {args:?} on {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether every node says `cluster_state:ok`.
fn cluster_ok(ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|&port| redis_cli(port, &["cluster", "info"]).contains("cluster_state:ok"))
}

/// A throwaway Redis Cluster: three masters on their own ports, each serving a share of
/// the slots and saying `cluster_state:ok`; a key written through one node is read
/// through another; stop closes every port, start brings the same cluster back (without
/// the data: nodes keep none), and drop leaves no process and no directory behind.
#[test]
fn redis_cluster_of_three_masters_starts_stops_restarts_and_cleans_up() {
    let began = Instant::now();
    let mut cluster = servers::redis_cluster().unwrap_or_else(|e| panic!("{e}"));
    let started = began.elapsed();
    let ports = cluster.ports();
    assert_eq!(ports.len(), 3, "{cluster:?}");
    assert_eq!(
        cluster.urls(),
        ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
    );
    assert!(cluster_ok(&ports));
    let nodes = redis_cli(ports[0], &["cluster", "nodes"]);
    let masters: Vec<&str> = nodes.lines().filter(|l| l.contains("master")).collect();
    assert_eq!(masters.len(), 3, "{nodes}");
    for master in &masters {
        // `<id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slots>...`
        assert!(
            master.split_whitespace().nth(8).is_some(),
            "a master without slots: {master}"
        );
    }
    // Keys in every slot range: whichever node is asked, each comes back.
    for i in 0..30 {
        let key = format!("servers-test-{i}");
        redis_cli(ports[i % 3], &["set", &key, &i.to_string()]);
        assert_eq!(redis_cli(ports[(i + 1) % 3], &["get", &key]), i.to_string());
    }

    let dirs: Vec<_> = cluster
        .nodes()
        .iter()
        .map(|node| node.dir().unwrap().to_owned())
        .collect();
    assert!(dirs.iter().all(|dir| dir.join("nodes.conf").is_file()));
    cluster.stop().unwrap_or_else(|e| panic!("{e}"));
    for &port in &ports {
        assert!(!port_open(port), "port {port} still open after stop");
    }
    let t = Instant::now();
    cluster.start().unwrap_or_else(|e| panic!("{e}"));
    let restart = t.elapsed();
    assert_eq!(cluster.ports(), ports);
    assert!(cluster_ok(&ports));
    assert_eq!(redis_cli(ports[0], &["get", "servers-test-0"]), "");
    redis_cli(ports[1], &["set", "servers-test-0", "again"]);
    assert_eq!(redis_cli(ports[2], &["get", "servers-test-0"]), "again");

    let pids: Vec<u32> = cluster
        .nodes()
        .iter()
        .flat_map(|node| process_tree(parent(node.pid().unwrap())))
        .collect();
    drop(cluster);
    let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    assert!(left.is_empty(), "processes left after drop: {left:?}");
    for dir in &dirs {
        assert!(!dir.exists(), "{} left after drop", dir.display());
    }
    eprintln!("redis cluster: start and join {started:.2?}, restart {restart:.2?}");
}
