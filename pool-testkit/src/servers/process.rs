//! Throwaway servers: binaries, temporary directory, system user, the server process
//! and its watchdog.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::probe::{self, Answer};
use super::{Database, ServerError};

/// How long a server may take to accept connections after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit once told to stop, before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `initdb`, `mariadb-install-db` and the `mariadb` client may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How many fresh ports a first start tries when the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Runs the server as a child of a small shell that stops it (with the signal in `$1`)
/// as soon as its standard input closes: when [`Throwaway::stop`] closes the pipe, and
/// when the test process ends in any way, for the kernel closes the pipe then too. The
/// shell prints the server's pid first; the server's output goes to the shell's
/// standard error, the log file.
pub(super) const WATCHDOG: &str = r#"signal=$1
shift
exec 3<&0 </dev/null
"$@" >&2 3<&- &
server=$!
echo "$server"
exec >&2
{ read -r line <&3; kill -s "$signal" "$server" 2>/dev/null; } &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$status"
"#;

/// The programs a throwaway server of one database needs.
enum Binaries {
    Postgres {
        initdb: PathBuf,
        postgres: PathBuf,
    },
    Mysql {
        install_db: PathBuf,
        mariadbd: PathBuf,
        client: PathBuf,
    },
    Redis {
        server: PathBuf,
    },
}

/// Debian's self-signed certificate and key (package ssl-cert, which PostgreSQL's
/// packages depend on).
const SNAKEOIL_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const SNAKEOIL_KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";

/// The system user a server runs as when the tests run as root.
pub(super) struct ServiceUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

struct Running {
    /// The watchdog shell.
    child: Child,
    /// Closing it stops the server.
    stdin: Option<ChildStdin>,
    /// The server process, the shell's child.
    server_pid: u32,
}

/// A server this module started, in its own directory.
pub(super) struct Throwaway {
    database: Database,
    binaries: Binaries,
    user: Option<ServiceUser>,
    dir: PathBuf,
    port: u16,
    /// Arguments added to the server's own (a Redis Cluster node's settings).
    extra_args: Vec<String>,
    running: Option<Running>,
}

impl Throwaway {
    /// Initialises a data directory, starts the server on a free port, waits until it
    /// accepts connections and creates the database `test` (PostgreSQL, MariaDB).
    pub(super) fn create(database: Database) -> Result<Throwaway, ServerError> {
        Throwaway::create_with_args(database, Vec::new())
    }

    /// [`create`](Self::create) with `extra_args` after the server's own arguments.
    pub(super) fn create_with_args(
        database: Database,
        extra_args: Vec<String>,
    ) -> Result<Throwaway, ServerError> {
        let binaries = Binaries::find(database)?;
        let user = ServiceUser::for_database(database)?;
        let dir = make_dir(database)?;
        // From here on, dropping `throwaway` stops the server and removes `dir`.
        let mut throwaway = Throwaway {
            database,
            binaries,
            user,
            dir,
            port: 0,
            extra_args,
            running: None,
        };
        if let Some(user) = &throwaway.user {
            chown(&throwaway.dir, Some(user.uid), Some(user.gid))
                .map_err(|e| io_error(format!("chown {}", throwaway.dir.display()), e))?;
        }
        throwaway.init()?;
        for attempt in 1..=PORT_ATTEMPTS {
            throwaway.port = free_port()?;
            match throwaway.start() {
                Ok(()) => break,
                Err(ServerError::Failed { log_tail, .. })
                    if attempt < PORT_ATTEMPTS && log_tail.contains("already in use") => {}
                Err(error) => return Err(error),
            }
        }
        throwaway.create_test_database()?;
        Ok(throwaway)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|running| running.server_pid)
    }

    pub(super) fn is_running(&mut self) -> bool {
        match &mut self.running {
            Some(running) => matches!(running.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A command run in the server's directory, as its system user when we are root.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some(user) = &self.user {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// Creates the data directory: `initdb` or `mariadb-install-db` (Redis needs none).
    fn init(&mut self) -> Result<(), ServerError> {
        let data = self.data_dir();
        let mut command = match &self.binaries {
            Binaries::Postgres { initdb, .. } => {
                let mut command = self.command(initdb);
                command
                    .arg("-D")
                    .arg(&data)
                    .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                    .args(["-E", "UTF8", "--locale=C"]);
                command
            }
            Binaries::Mysql { install_db, .. } => {
                let mut command = self.command(install_db);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
                command
            }
            Binaries::Redis { .. } => return Ok(()),
        };
        let log = self.dir.join("init.log");
        run(&mut command, &log, "initialise the data directory")?;
        if let Binaries::Postgres { .. } = self.binaries {
            self.install_tls_pair()?;
        }
        Ok(())
    }

    /// Gives a throwaway PostgreSQL TLS, as Debian's own clusters have it, by copying
    /// the system's snake-oil certificate and key into the data directory (where the
    /// server looks for `server.crt` and `server.key`), so TLS tests pass on a
    /// throwaway server too. Without that pair the server runs with `ssl = off`.
    fn install_tls_pair(&self) -> Result<(), ServerError> {
        let (cert, key) = (Path::new(SNAKEOIL_CERT), Path::new(SNAKEOIL_KEY));
        let Ok(key_bytes) = std::fs::read(key) else {
            return Ok(());
        };
        if !cert.exists() {
            return Ok(());
        }
        let data = self.data_dir();
        let copy = |to: &Path, bytes: &[u8], mode: u32| -> Result<(), ServerError> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(to, bytes)
                .map_err(|e| io_error(format!("write {}", to.display()), e))?;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_error(format!("chmod {}", to.display()), e))?;
            if let Some(user) = &self.user {
                chown(to, Some(user.uid), Some(user.gid))
                    .map_err(|e| io_error(format!("chown {}", to.display()), e))?;
            }
            Ok(())
        };
        let cert_bytes =
            std::fs::read(cert).map_err(|e| io_error(format!("read {}", cert.display()), e))?;
        copy(&data.join("server.crt"), &cert_bytes, 0o644)?;
        copy(&data.join("server.key"), &key_bytes, 0o600)
    }

    /// The server's program, its arguments, and the signal that stops it quickly.
    fn server_command(&self) -> (&Path, Vec<String>, &'static str) {
        let dir = self.dir.display();
        let data = self.data_dir().display().to_string();
        let port = self.port.to_string();
        match &self.binaries {
            // SIGINT: fast shutdown (sessions ended, transactions rolled back).
            Binaries::Postgres { postgres, .. } => (
                postgres,
                vec![
                    "-D".into(),
                    data,
                    "-p".into(),
                    port,
                    "-k".into(),
                    dir.to_string(),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-c".into(),
                    "fsync=off".into(),
                    "-c".into(),
                    format!(
                        "ssl={}",
                        if self.data_dir().join("server.key").exists() {
                            "on"
                        } else {
                            "off"
                        }
                    ),
                ],
                "INT",
            ),
            Binaries::Mysql { mariadbd, .. } => (
                mariadbd,
                vec![
                    "--no-defaults".into(),
                    format!("--datadir={data}"),
                    format!("--port={port}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--socket={dir}/s"),
                    format!("--pid-file={dir}/mariadbd.pid"),
                    "--skip-name-resolve".into(),
                ],
                "TERM",
            ),
            Binaries::Redis { server } => (
                server,
                vec![
                    "--port".into(),
                    port,
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--save".into(),
                    String::new(),
                    "--appendonly".into(),
                    "no".into(),
                    "--dir".into(),
                    dir.to_string(),
                ],
                "TERM",
            ),
        }
    }

    /// Starts the server (unless it runs) and waits until it accepts connections.
    pub(super) fn start(&mut self) -> Result<(), ServerError> {
        if self.is_running() {
            return Ok(());
        }
        // A server that exited by itself: reap its watchdog.
        self.running = None;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error(format!("open {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let (program, args, signal) = self.server_command();
        let mut command = self.command(Path::new("/bin/sh"));
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("pool-testkit-watchdog")
            .arg(signal)
            .arg(program)
            .args(&args)
            .args(&self.extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let name = self.database.name();
        let mut child = command
            .spawn()
            .map_err(|e| io_error(format!("start {name} ({})", program.display()), e))?;
        let stdin = child.stdin.take();
        let mut first_line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut first_line);
        }
        let Ok(server_pid) = first_line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServerError::Failed {
                context: format!("{name}: the watchdog shell did not start the server"),
                log_tail: log_tail(&log_path, log_start),
            });
        };
        self.running = Some(Running {
            child,
            stdin,
            server_pid,
        });
        let ready = self.wait_ready(log_start);
        if ready.is_err() {
            let _ = self.stop();
        }
        ready
    }

    fn wait_ready(&mut self, log_start: u64) -> Result<(), ServerError> {
        let name = self.database.name();
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
                        "{name} exited ({status}) before accepting connections on \
                         127.0.0.1:{port}"
                    ),
                    log_tail: log_tail(&self.log_path(), log_start),
                });
            }
            match probe::ready(self.database, port) {
                Answer::Ready => return Ok(()),
                Answer::Refused(reason) => {
                    return Err(ServerError::Failed {
                        context: format!(
                            "{name} started on 127.0.0.1:{port} but refused the tests' \
                             login: {reason}"
                        ),
                        log_tail: log_tail(&self.log_path(), log_start),
                    })
                }
                Answer::NotYet => {}
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Failed {
                    context: format!(
                        "{name} did not accept connections on 127.0.0.1:{port} within {} s",
                        READY_TIMEOUT.as_secs()
                    ),
                    log_tail: log_tail(&self.log_path(), log_start),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (if it runs) and waits until it has exited.
    pub(super) fn stop(&mut self) -> Result<(), ServerError> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        // The watchdog sees its standard input close and signals the server.
        drop(running.stdin.take());
        let waited = wait_timeout(&mut running.child, STOP_TIMEOUT)
            .map_err(|e| io_error(format!("wait for {}", self.database.name()), e))?;
        if waited.is_some() {
            return Ok(());
        }
        signal(running.server_pid, "KILL");
        let _ = running.child.kill();
        let _ = running.child.wait();
        Err(ServerError::Failed {
            context: format!(
                "{} (pid {}) did not stop within {} s of its stop signal, and was killed",
                self.database.name(),
                running.server_pid,
                STOP_TIMEOUT.as_secs()
            ),
            log_tail: log_tail(&self.log_path(), 0),
        })
    }

    /// Creates the database `test` the URL names, after the first start.
    fn create_test_database(&self) -> Result<(), ServerError> {
        let name = self.database.name();
        match &self.binaries {
            Binaries::Postgres { .. } => probe::postgres_create_database(self.port, "test")
                .map_err(|reason| ServerError::Failed {
                    context: format!("{name}: CREATE DATABASE test failed: {reason}"),
                    log_tail: log_tail(&self.log_path(), 0),
                }),
            Binaries::Mysql { client, .. } => {
                // Over the socket, as root without a password; any OS user may.
                let mut command = Command::new(client);
                command
                    .arg("--no-defaults")
                    .arg("--protocol=socket")
                    .arg(format!("--socket={}", self.dir.join("s").display()))
                    .args(["--user=root", "-e", "CREATE DATABASE IF NOT EXISTS test"])
                    .stdin(Stdio::null());
                run(
                    &mut command,
                    &self.dir.join("client.log"),
                    "CREATE DATABASE test",
                )
            }
            Binaries::Redis { .. } => Ok(()),
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("pool-testkit: {error}");
        }
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            if error.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "pool-testkit: cannot remove {}: {error}",
                    self.dir.display()
                );
            }
        }
    }
}

impl Binaries {
    fn find(database: Database) -> Result<Binaries, ServerError> {
        let missing = |binary: &'static str, looked_in: String, package: &'static str| {
            ServerError::MissingBinary {
                database,
                binary,
                looked_in,
                package,
            }
        };
        let path_dirs = || -> Vec<PathBuf> {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default();
            // Server binaries live in sbin, which is not on every user's PATH.
            for extra in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
                if !dirs.iter().any(|dir| dir == Path::new(extra)) {
                    dirs.push(extra.into());
                }
            }
            dirs
        };
        let find = |name: &str, dirs: &[PathBuf]| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
        };
        let path_text = "PATH, /usr/sbin and /usr/local/sbin";
        match database {
            Database::Postgres => {
                // Debian keeps each major version's server in /usr/lib/postgresql/N/bin,
                // off PATH: the newest one with both programs wins. Else PATH.
                let mut dirs = postgres_version_dirs();
                dirs.extend(path_dirs());
                for dir in &dirs {
                    let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
                    if is_executable(&initdb) && is_executable(&postgres) {
                        return Ok(Binaries::Postgres { initdb, postgres });
                    }
                }
                let binary = if find("initdb", &dirs).is_some() {
                    "postgres"
                } else {
                    "initdb"
                };
                let looked_in = format!("/usr/lib/postgresql/*/bin, {path_text}");
                Err(missing(binary, looked_in, "postgresql"))
            }
            Database::Mysql => {
                let dirs = path_dirs();
                let get = |name: &'static str, package: &'static str| {
                    find(name, &dirs).ok_or_else(|| missing(name, path_text.into(), package))
                };
                Ok(Binaries::Mysql {
                    install_db: get("mariadb-install-db", "mariadb-server")?,
                    mariadbd: get("mariadbd", "mariadb-server")?,
                    client: get("mariadb", "mariadb-client")?,
                })
            }
            Database::Redis => {
                let server = find("redis-server", &path_dirs())
                    .ok_or_else(|| missing("redis-server", path_text.into(), "redis-server"))?;
                Ok(Binaries::Redis { server })
            }
        }
    }
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn postgres_version_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl ServiceUser {
    /// PostgreSQL and MariaDB refuse to run as root: when we are root they run as their
    /// packages' system users. Redis runs as whoever starts it.
    pub(super) fn for_database(database: Database) -> Result<Option<ServiceUser>, ServerError> {
        let name = match database {
            Database::Postgres => "postgres",
            Database::Mysql => "mysql",
            Database::Redis => return Ok(None),
        };
        if !is_root() {
            return Ok(None);
        }
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(Some(ServiceUser { uid, gid })),
            _ => Err(ServerError::MissingUser {
                database,
                user: name,
            }),
        }
    }
}

/// Whether the tests run as root (`id -u` says 0).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
    })
}

/// A new directory `pool-testkit-<db>-<pid>-<n>-<time>` in the temporary directory.
fn make_dir(database: Database) -> Result<PathBuf, ServerError> {
    make_tagged_dir(match database {
        Database::Postgres => "postgres",
        Database::Mysql => "mysql",
        Database::Redis => "redis",
    })
}

/// A new directory `pool-testkit-<tag>-<pid>-<n>-<time>` in the temporary directory.
pub(super) fn make_tagged_dir(tag: &str) -> Result<PathBuf, ServerError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "pool-testkit-{tag}-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(format!("create {}", dir.display()), e)),
        }
    }
}

/// A free TCP port on 127.0.0.1: one the kernel gives to a listener on port 0, and
/// not given out before by this process.
pub(super) fn free_port() -> Result<u16, ServerError> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..50 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| io_error("bind 127.0.0.1:0".into(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io_error("read a listener's port".into(), e))?
            .port();
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(io_error(
        "find a free port".into(),
        io::Error::new(io::ErrorKind::AddrInUse, "no new free port in 50 tries"),
    ))
}

/// Runs `command` to its end with its output in `log`; a failure carries the log.
fn run(command: &mut Command, log: &Path, what: &str) -> Result<(), ServerError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let file = File::create(log).map_err(|e| io_error(format!("create {}", log.display()), e))?;
    let err = file
        .try_clone()
        .map_err(|e| io_error(format!("open {}", log.display()), e))?;
    let mut child = command
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| io_error(format!("{what}: run {program}"), e))?;
    let status = wait_timeout(&mut child, COMMAND_TIMEOUT)
        .map_err(|e| io_error(format!("{what}: wait for {program}"), e))?;
    let failure = match status {
        Some(status) if status.success() => return Ok(()),
        Some(status) => format!("{what}: {program} failed ({status})"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            format!(
                "{what}: {program} did not finish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        }
    };
    Err(ServerError::Failed {
        context: failure,
        log_tail: log_tail(log, 0),
    })
}

pub(super) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `pid` with the shell's `kill`.
pub(super) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", signal])
        .arg(pid.to_string())
        .status();
}

/// The last lines (up to 30, and 4 KiB) the log got from byte `from` on.
pub(super) fn log_tail(path: &Path, from: u64) -> String {
    const MAX_BYTES: u64 = 4096;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(MAX_BYTES));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub(super) fn io_error(context: String, source: io::Error) -> ServerError {
    ServerError::Io { context, source }
}
