//! A throwaway PgBouncer in transaction pooling mode, in front of a PostgreSQL server.
//!
//! [`pgbouncer`] (or [`PgBouncer::in_front_of`] with a URL) starts Debian's
//! `/usr/sbin/pgbouncer` in a new temporary directory on a free port of 127.0.0.1, with
//! `pool_mode = transaction` and one database, the upstream URL's, pointing at the
//! upstream server. Clients connect with [`PgBouncer::url`]
//! (`postgres://USER@127.0.0.1:PORT/DB`: the upstream's user and database, no password,
//! for PgBouncer trusts its clients and logs in to the server with the upstream URL's
//! password itself). Its admin console (`SHOW CLIENTS`, `SHOW SERVERS`, `KILL db`, ...)
//! is [`PgBouncer::admin_url`], as [`ADMIN_USER`].
//!
//! It is always a throwaway one: the suite needs its admin console, and stops and starts
//! it. When the tests run as root it runs as the `postgres` system user (as PostgreSQL's
//! throwaway servers do), since PgBouncer refuses to run as root. Like them it stops on
//! drop, and when the test process ends without dropping it, through the same watchdog.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::probe::{self, Answer};
use super::process::{
    free_port, io_error, is_executable, log_tail, make_tagged_dir, signal, wait_timeout,
    ServiceUser, WATCHDOG,
};
use super::{Database, Server, ServerError};

/// The admin console's user: [`PgBouncer::admin_url`] logs in as it, without a password.
pub const ADMIN_USER: &str = "pool_testkit_admin";

/// How many server connections PgBouncer opens to the upstream per user and database
/// (`default_pool_size`): few, so that concurrent clients share them, as they do in
/// production, and the shared test server is not crowded.
pub const POOL_SIZE: usize = 8;

/// Where Debian installs it; PATH and the other sbin directories are searched too.
const PGBOUNCER: &str = "pgbouncer";
/// How long PgBouncer may take to accept a client that reaches the upstream.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit once told to, before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports a first start tries when the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// A PgBouncer in front of `upstream`, started and accepting clients; see the
/// [module docs](self).
pub fn pgbouncer(upstream: &Server) -> Result<PgBouncer, ServerError> {
    PgBouncer::in_front_of(upstream.url())
}

/// The server PgBouncer connects to, from a `postgres://` URL.
#[derive(Clone)]
struct Upstream {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
}

/// The PgBouncer process, under the watchdog shell.
struct Running {
    child: Child,
    /// Closing it stops PgBouncer.
    stdin: Option<ChildStdin>,
    pid: u32,
}

/// A throwaway PgBouncer; see the [module docs](self). Dropping it stops it and removes
/// its directory.
pub struct PgBouncer {
    binary: PathBuf,
    /// SIGTERM up to 1.22 (immediate shutdown); 1.23 made SIGTERM wait for every
    /// client to leave, and SIGQUIT the immediate one.
    stop_signal: &'static str,
    user: Option<ServiceUser>,
    upstream: Upstream,
    dir: PathBuf,
    port: u16,
    url: String,
    admin_url: String,
    running: Option<Running>,
}

impl PgBouncer {
    /// Starts a PgBouncer in front of the server at `upstream_url`, a
    /// `postgres://user[:password]@host[:port][/dbname]` URL, and waits until a client
    /// gets through it to that server.
    pub fn in_front_of(upstream_url: &str) -> Result<PgBouncer, ServerError> {
        let upstream = Upstream::parse(upstream_url)?;
        let binary = find_binary()?;
        let stop_signal = stop_signal_for(&binary)?;
        let user = ServiceUser::for_database(Database::Postgres)?;
        let dir = make_tagged_dir("pgbouncer")?;
        let mut bouncer = PgBouncer {
            binary,
            stop_signal,
            user,
            url: String::new(),
            admin_url: String::new(),
            upstream,
            dir,
            port: 0,
            running: None,
        };
        if let Some(user) = &bouncer.user {
            chown(&bouncer.dir, Some(user.uid), Some(user.gid))
                .map_err(|e| io_error(format!("chown {}", bouncer.dir.display()), e))?;
        }
        for attempt in 1..=PORT_ATTEMPTS {
            bouncer.port = free_port()?;
            bouncer.url = format!(
                "postgres://{}@127.0.0.1:{}/{}",
                percent_encode(&bouncer.upstream.user),
                bouncer.port,
                percent_encode(&bouncer.upstream.dbname)
            );
            bouncer.admin_url = format!(
                "postgres://{ADMIN_USER}@127.0.0.1:{}/pgbouncer",
                bouncer.port
            );
            bouncer.write_config()?;
            match bouncer.start() {
                Ok(()) => break,
                Err(ServerError::Failed { log_tail, .. })
                    if attempt < PORT_ATTEMPTS && log_tail.contains("in use") => {}
                Err(error) => return Err(error),
            }
        }
        Ok(bouncer)
    }

    /// The URL clients connect with: `postgres://USER@127.0.0.1:PORT/DB`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin console's URL: `postgres://pool_testkit_admin@127.0.0.1:PORT/pgbouncer`.
    /// The console speaks only the simple query protocol (`simple_query`,
    /// `batch_execute`).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The database clients connect to, the name the console's `KILL` and `RESUME` take
    /// (the upstream URL's database).
    pub fn database(&self) -> &str {
        &self.upstream.dbname
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PgBouncer process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|running| running.pid)
    }

    /// Its directory (config, user list, log), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it runs (started and not stopped, and has not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Some(running) => matches!(running.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("pgbouncer.ini")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("pgbouncer.log")
    }

    /// Writes `pgbouncer.ini` and the user list it names.
    fn write_config(&self) -> Result<(), ServerError> {
        let up = &self.upstream;
        let users = self.dir.join("userlist.txt");
        // The user list is what `auth_type = trust` lets in, and where PgBouncer finds
        // the password it logs in to the upstream with.
        let mut list = format!(
            "{} {}\n",
            quote_user_list(&up.user),
            quote_user_list(up.password.as_deref().unwrap_or(""))
        );
        if up.user != ADMIN_USER {
            list.push_str(&format!("{} \"\"\n", quote_user_list(ADMIN_USER)));
        }
        let config = format!(
            "[databases]\n\
             {db} = host={host} port={port} dbname={db}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             admin_users = {ADMIN_USER}\n\
             pool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\n\
             max_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n",
            db = up.dbname,
            host = up.host,
            port = up.port,
            listen = self.port,
            users = users.display(),
        );
        self.write_private(&users, &list)?;
        self.write_private(&self.config_path(), &config)
    }

    /// Writes a file only its owner (PgBouncer's user) can read: the user list may
    /// hold the upstream's password.
    fn write_private(&self, path: &Path, text: &str) -> Result<(), ServerError> {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, text).map_err(|e| io_error(format!("write {}", path.display()), e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(format!("chmod {}", path.display()), e))?;
        if let Some(user) = &self.user {
            chown(path, Some(user.uid), Some(user.gid))
                .map_err(|e| io_error(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Starts PgBouncer (unless it runs) on its port and waits until a client gets
    /// through it to the upstream. Blocks.
    pub fn start(&mut self) -> Result<(), ServerError> {
        if self.is_running() {
            return Ok(());
        }
        self.running = None;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error(format!("open {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new("/bin/sh");
        command
            .current_dir(&self.dir)
            .arg("-c")
            .arg(WATCHDOG)
            .arg("pool-testkit-watchdog")
            .arg(self.stop_signal)
            .arg(&self.binary)
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(user) = &self.user {
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = command
            .spawn()
            .map_err(|e| io_error(format!("start PgBouncer ({})", self.binary.display()), e))?;
        let stdin = child.stdin.take();
        let mut first_line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first_line);
        }
        let Ok(pid) = first_line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServerError::Failed {
                context: "PgBouncer: the watchdog shell did not start it".to_owned(),
                log_tail: log_tail(&log_path, log_start),
            });
        };
        self.running = Some(Running { child, stdin, pid });
        let ready = self.wait_ready(log_start);
        if ready.is_err() {
            let _ = self.stop();
        }
        ready
    }

    fn wait_ready(&mut self, log_start: u64) -> Result<(), ServerError> {
        let port = self.port;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = match &mut self.running {
                Some(running) => running.child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.running = None;
                return Err(ServerError::Failed {
                    context: format!(
                        "PgBouncer exited ({status}) before accepting clients on \
                         127.0.0.1:{port}"
                    ),
                    log_tail: log_tail(&self.log_path(), log_start),
                });
            }
            // A login through PgBouncer to the upstream database: PgBouncer listens,
            // and reaches the server.
            match probe::postgres_login(port, &self.upstream.user, &self.upstream.dbname) {
                Answer::Ready => return Ok(()),
                Answer::Refused(reason) => {
                    return Err(ServerError::Failed {
                        context: format!(
                            "PgBouncer started on 127.0.0.1:{port} but refused the tests' \
                             login to {}:{}/{}: {reason}",
                            self.upstream.host, self.upstream.port, self.upstream.dbname
                        ),
                        log_tail: log_tail(&self.log_path(), log_start),
                    })
                }
                Answer::NotYet => {}
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Failed {
                    context: format!(
                        "PgBouncer did not accept clients on 127.0.0.1:{port} within {} s",
                        READY_TIMEOUT.as_secs()
                    ),
                    log_tail: log_tail(&self.log_path(), log_start),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops PgBouncer at once (every client and server connection it holds is
    /// closed) and waits until it has exited, so its port is closed. Stopping a
    /// stopped one does nothing. Blocks.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        drop(running.stdin.take());
        let waited = wait_timeout(&mut running.child, STOP_TIMEOUT)
            .map_err(|e| io_error("wait for PgBouncer".to_owned(), e))?;
        if waited.is_some() {
            return Ok(());
        }
        signal(running.pid, "KILL");
        let _ = running.child.kill();
        let _ = running.child.wait();
        Err(ServerError::Failed {
            context: format!(
                "PgBouncer (pid {}) did not stop within {} s of SIG{}, and was killed",
                running.pid,
                STOP_TIMEOUT.as_secs(),
                self.stop_signal
            ),
            log_tail: log_tail(&self.log_path(), 0),
        })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("pool-testkit: {error}");
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "pool-testkit: cannot remove {}: {error}",
                    self.dir.display()
                );
            }
        }
    }
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("url", &self.url)
            .field(
                "upstream",
                &format_args!(
                    "{}@{}:{}/{}",
                    self.upstream.user,
                    self.upstream.host,
                    self.upstream.port,
                    self.upstream.dbname
                ),
            )
            .field("dir", &self.dir)
            .field("pid", &self.pid())
            .finish()
    }
}

/// A PgBouncer created on first use and kept for the whole run, that async tests stop
/// and start (the conformance suite's restart case). Its blocking work runs on tokio's
/// blocking threads; clones share the one PgBouncer.
#[derive(Clone, Debug)]
pub struct RestartablePgBouncer {
    upstream_url: Arc<str>,
    bouncer: Arc<Mutex<Option<PgBouncer>>>,
}

impl RestartablePgBouncer {
    /// A PgBouncer in front of `upstream_url`, not started until first used.
    pub fn new(upstream_url: &str) -> Self {
        RestartablePgBouncer {
            upstream_url: upstream_url.into(),
            bouncer: Arc::default(),
        }
    }

    /// Its client URL, starting it first if this is its first use.
    pub async fn url(&self) -> Result<String, String> {
        self.with(|bouncer| Ok(bouncer.url().to_owned())).await
    }

    /// Its admin console's URL, starting it first if this is its first use.
    pub async fn admin_url(&self) -> Result<String, String> {
        self.with(|bouncer| Ok(bouncer.admin_url().to_owned()))
            .await
    }

    /// Stops it: every client connection dies, new ones are refused.
    pub async fn stop(&self) -> Result<(), String> {
        self.with(|bouncer| {
            bouncer
                .stop()
                .map_err(|e| format!("stopping the throwaway PgBouncer: {e}"))
        })
        .await
    }

    /// Starts it again on the same port.
    pub async fn start(&self) -> Result<(), String> {
        self.with(|bouncer| {
            bouncer
                .start()
                .map_err(|e| format!("starting the throwaway PgBouncer: {e}"))
        })
        .await
    }

    async fn with<T, F>(&self, action: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgBouncer) -> Result<T, String> + Send + 'static,
    {
        let (upstream, bouncer) = (Arc::clone(&self.upstream_url), Arc::clone(&self.bouncer));
        tokio::task::spawn_blocking(move || {
            let mut slot = bouncer.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                let created = PgBouncer::in_front_of(&upstream)
                    .map_err(|e| format!("a throwaway PgBouncer: {e}"))?;
                *slot = Some(created);
            }
            action(slot.as_mut().expect("created above"))
        })
        .await
        .map_err(|e| format!("the blocking task for the restartable PgBouncer: {e}"))?
    }
}

/// The `pgbouncer` program: in PATH or an sbin directory.
fn find_binary() -> Result<PathBuf, ServerError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        if !dirs.iter().any(|dir| dir == Path::new(extra)) {
            dirs.push(extra.into());
        }
    }
    dirs.iter()
        .map(|dir| dir.join(PGBOUNCER))
        .find(|path| is_executable(path))
        .ok_or_else(|| ServerError::Failed {
            context: "PgBouncer: `pgbouncer` is not installed (looked in PATH, /usr/sbin and \
                      /usr/local/sbin); install the Debian package `pgbouncer` \
                      (apt-get install pgbouncer)"
                .to_owned(),
            log_tail: String::new(),
        })
}

/// The signal that stops this PgBouncer at once, from its version (`pgbouncer -V`).
fn stop_signal_for(binary: &Path) -> Result<&'static str, ServerError> {
    let out = Command::new(binary)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io_error(format!("run {} -V", binary.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| ServerError::Failed {
        context: format!(
            "PgBouncer: cannot read a version from `{} -V`: {:?}",
            binary.display(),
            text.lines().next().unwrap_or_default()
        ),
        log_tail: String::new(),
    })?;
    Ok(if version >= (1, 23) { "QUIT" } else { "TERM" })
}

/// `(major, minor)` from `PgBouncer 1.18.0` (the first line of `pgbouncer -V`).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = word.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Upstream {
    /// Reads `postgres://user[:password]@host[:port][/dbname][?...]` (the query is
    /// ignored; the server must be reachable over TCP).
    fn parse(url: &str) -> Result<Upstream, ServerError> {
        let bad = |why: &str| ServerError::Failed {
            context: format!(
                "cannot put PgBouncer in front of {}: {why}",
                super::redact(url)
            ),
            log_tail: String::new(),
        };
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("only a postgres:// URL is supported"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| bad("the URL names no user"))?;
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(percent_decode(password))),
            None => (userinfo, None),
        };
        let user = percent_decode(user);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 host without its closing `]`"))?;
            (host.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (hostport.to_owned(), None),
            }
        };
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| bad(&format!("`{port}` is not a port")))?,
            None => 5432,
        };
        let dbname = match percent_decode(path) {
            name if name.is_empty() => user.clone(),
            name => name,
        };
        for (what, value) in [("user", &user), ("host", &host), ("database", &dbname)] {
            if value.is_empty() {
                return Err(bad(&format!("the URL names no {what}")));
            }
            if !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
            {
                return Err(bad(&format!(
                    "the {what} `{value}` has characters pgbouncer.ini cannot hold here \
                     (letters, digits, `.`, `_`, `-` and `:` only)"
                )));
            }
        }
        Ok(Upstream {
            user,
            password,
            host,
            port,
            dbname,
        })
    }
}

/// A user list field: in double quotes, a double quote doubled.
fn quote_user_list(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_read() {
        let up = Upstream::parse("postgres://postgres@127.0.0.1:5432/test").unwrap();
        assert_eq!(
            (
                up.user.as_str(),
                up.password,
                up.host.as_str(),
                up.port,
                up.dbname.as_str()
            ),
            ("postgres", None, "127.0.0.1", 5432, "test")
        );
        let up =
            Upstream::parse("postgresql://app:p%40ss@db.local/orders?sslmode=disable").unwrap();
        assert_eq!(up.password.as_deref(), Some("p@ss"));
        assert_eq!((up.host.as_str(), up.port), ("db.local", 5432));
        assert_eq!(up.dbname, "orders");
        let up = Upstream::parse("postgres://app@[::1]:6000").unwrap();
        assert_eq!(
            (up.host.as_str(), up.port, up.dbname.as_str()),
            ("::1", 6000, "app")
        );
    }

    #[test]
    fn unusable_upstream_urls_name_the_problem_without_the_password() {
        for (url, words) in [
            ("host=db user=x", "postgres:// URL"),
            ("postgres://db/test", "no user"),
            ("postgres://app:s3cret@db:port/x", "not a port"),
            ("postgres://app:s3cret@db/my%20db", "characters"),
        ] {
            let err = Upstream::parse(url).err().expect(url).to_string();
            assert!(err.contains(words), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn versions_choose_the_immediate_stop_signal() {
        assert_eq!(
            parse_version("PgBouncer 1.18.0\nlibevent 2.1.12"),
            Some((1, 18))
        );
        assert_eq!(parse_version("PgBouncer 1.23.1"), Some((1, 23)));
        assert_eq!(parse_version("nonsense"), None);
    }
}
