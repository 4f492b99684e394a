//! Short handshakes over TCP, std only: is a server there, ready, and usable as the
//! tests expect? Also creates the throwaway PostgreSQL server's database.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{Database, ServerError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a server found on the default port may still be starting up.
const SHARED_STARTUP: Duration = Duration::from_secs(10);

/// What a handshake with a server found.
pub(super) enum Answer {
    /// It accepts us.
    Ready,
    /// Nothing listens, the connection broke, or the server is still starting.
    NotYet,
    /// It answers but refuses us: what it said.
    Refused(String),
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a throwaway server of ours on `port` accepts its superuser (its database
/// `test` may not exist yet).
pub(super) fn ready(database: Database, port: u16) -> Answer {
    match database {
        Database::Postgres => postgres_login(port, "postgres", "postgres"),
        Database::Mysql => mysql_login(port, "root", None),
        Database::Redis => redis_ping(port),
    }
}

/// The user the tests connect as to the server on the default local `port`, or `None`
/// when nothing listens there. A server that is there but refuses us is an error.
pub(super) fn default_local(database: Database, port: u16) -> Result<Option<String>, ServerError> {
    if connect(port).is_err() {
        return Ok(None);
    }
    let users = match database {
        Database::Postgres => postgres_users(),
        Database::Mysql => vec!["root".to_owned()],
        Database::Redis => vec![String::new()],
    };
    let deadline = Instant::now() + SHARED_STARTUP;
    let mut refusals = Vec::new();
    for user in users {
        loop {
            let answer = match database {
                Database::Postgres => postgres_login(port, &user, "test"),
                Database::Mysql => mysql_login(port, &user, Some("test")),
                Database::Redis => redis_ping(port),
            };
            match answer {
                Answer::Ready => return Ok(Some(user)),
                Answer::Refused(reason) if user.is_empty() => refusals.push(reason),
                Answer::Refused(reason) => refusals.push(format!("as `{user}`: {reason}")),
                Answer::NotYet if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Answer::NotYet => refusals.push(format!(
                    "no answer, or still starting up, after {} s",
                    SHARED_STARTUP.as_secs()
                )),
            }
            break;
        }
    }
    Err(ServerError::Unusable {
        database,
        addr: format!("127.0.0.1:{port}"),
        reason: refusals.join("; "),
    })
}

/// The roles to try on a PostgreSQL server found on the default port: `postgres` (every
/// Debian cluster has it), then the login name of the user running the tests (the
/// superuser of a Homebrew or hand-made `initdb` cluster).
fn postgres_users() -> Vec<String> {
    let mut users = vec!["postgres".to_owned()];
    let login = std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            let out = Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !name.is_empty()).then_some(name)
        });
    if let Some(login) = login {
        if !users.contains(&login) {
            users.push(login);
        }
    }
    users
}

// --- PostgreSQL: the startup message and the simple query protocol (protocol 3.0) ---

enum PgError {
    Io(io::Error),
    /// An ErrorResponse: SQLSTATE and message.
    Server(String, String),
    Other(String),
}

impl From<io::Error> for PgError {
    fn from(error: io::Error) -> Self {
        PgError::Io(error)
    }
}

impl PgError {
    fn describe(self) -> String {
        match self {
            PgError::Io(error) => error.to_string(),
            PgError::Server(code, message) => format!("{message} (SQLSTATE {code})"),
            PgError::Other(message) => message,
        }
    }
}

pub(super) fn postgres_login(port: u16, user: &str, database: &str) -> Answer {
    match postgres_connect(port, user, database) {
        Ok(mut stream) => {
            postgres_terminate(&mut stream);
            Answer::Ready
        }
        Err(PgError::Io(_)) => Answer::NotYet,
        // 57P03: "the database system is starting up" (or shutting down, in recovery).
        Err(PgError::Server(code, _)) if code == "57P03" => Answer::NotYet,
        Err(error) => Answer::Refused(error.describe()),
    }
}

/// Connects to a trust-auth server and reads up to its first ReadyForQuery.
fn postgres_connect(port: u16, user: &str, database: &str) -> Result<TcpStream, PgError> {
    let mut stream = connect(port)?;
    let mut body = 196_608_i32.to_be_bytes().to_vec(); // protocol 3.0
    for (key, value) in [
        ("user", user),
        ("database", database),
        ("application_name", "pool-testkit"),
    ] {
        for text in [key, value] {
            body.extend_from_slice(text.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut message = len_be(body.len() + 4).to_vec();
    message.extend_from_slice(&body);
    stream.write_all(&message)?;
    loop {
        let (tag, body) = postgres_read(&mut stream)?;
        match tag {
            b'R' => {
                let kind = body
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if kind != Some(0) {
                    return Err(PgError::Other(format!(
                        "it asks for a password (authentication request {}); the tests \
                         expect trust authentication",
                        kind.unwrap_or(-1)
                    )));
                }
            }
            b'E' => return Err(postgres_error(&body)),
            b'Z' => return Ok(stream),
            _ => {} // ParameterStatus, BackendKeyData, NoticeResponse
        }
    }
}

/// Runs one statement through the simple query protocol.
fn postgres_query(stream: &mut TcpStream, sql: &str) -> Result<(), PgError> {
    let mut message = vec![b'Q'];
    message.extend_from_slice(&len_be(4 + sql.len() + 1));
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    stream.write_all(&message)?;
    let mut failure = None;
    loop {
        let (tag, body) = postgres_read(stream)?;
        match tag {
            b'E' => failure = Some(postgres_error(&body)),
            b'Z' => return failure.map_or(Ok(()), Err),
            _ => {}
        }
    }
}

fn postgres_terminate(stream: &mut TcpStream) {
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
}

fn postgres_read(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), PgError> {
    let mut header = [0_u8; 5];
    stream.read_exact(&mut header)?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if !(4..=1 << 20).contains(&len) {
        return Err(PgError::Other("this is not a PostgreSQL server".to_owned()));
    }
    let mut body = vec![0_u8; len as usize - 4];
    stream.read_exact(&mut body)?;
    Ok((header[0], body))
}

fn postgres_error(body: &[u8]) -> PgError {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        match field.split_first() {
            Some((b'C', value)) => code = String::from_utf8_lossy(value).into_owned(),
            Some((b'M', value)) => message = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    PgError::Server(code, message)
}

fn len_be(len: usize) -> [u8; 4] {
    i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes()
}

/// Creates database `name` on our throwaway PostgreSQL server (user `postgres`).
pub(super) fn postgres_create_database(port: u16, name: &str) -> Result<(), String> {
    let mut stream = postgres_connect(port, "postgres", "postgres").map_err(PgError::describe)?;
    let result = postgres_query(&mut stream, &format!("CREATE DATABASE \"{name}\""));
    postgres_terminate(&mut stream);
    result.map_err(PgError::describe)
}

// --- MariaDB/MySQL: the protocol 10 handshake with an empty password ---

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;

/// Logs in as `user` without a password (to `database`, if given), then quits. A
/// complete login rather than a dropped greeting, so the server counts no aborted
/// connection against the host.
fn mysql_login(port: u16, user: &str, database: Option<&str>) -> Answer {
    let Ok(mut stream) = connect(port) else {
        return Answer::NotYet;
    };
    match mysql_handshake(&mut stream, user, database) {
        Ok(Ok(())) => {
            let _ = stream.write_all(&[1, 0, 0, 0, 1]); // COM_QUIT
            Answer::Ready
        }
        Ok(Err(refusal)) => Answer::Refused(refusal),
        Err(_) => Answer::NotYet,
    }
}

fn mysql_handshake(
    stream: &mut TcpStream,
    user: &str,
    database: Option<&str>,
) -> io::Result<Result<(), String>> {
    let (_, greeting) = mysql_read(stream)?;
    match greeting.first() {
        Some(0x0a) => {}
        Some(0xff) => return Ok(Err(mysql_error(&greeting))),
        _ => return Ok(Err("this is not a MySQL or MariaDB server".to_owned())),
    }
    let mut flags =
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    if database.is_some() {
        flags |= CLIENT_CONNECT_WITH_DB;
    }
    let mut response = flags.to_le_bytes().to_vec();
    response.extend_from_slice(&(16_u32 << 20).to_le_bytes()); // max packet size
    response.push(45); // utf8mb4_general_ci
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.push(0); // an empty auth response: no password
    if let Some(database) = database {
        response.extend_from_slice(database.as_bytes());
        response.push(0);
    }
    response.extend_from_slice(b"mysql_native_password\0");
    mysql_write(stream, 1, &response)?;
    loop {
        let (seq, reply) = mysql_read(stream)?;
        match reply.first() {
            Some(0x00) => return Ok(Ok(())),
            Some(0xff) => return Ok(Err(mysql_error(&reply))),
            // An auth switch request: the empty password in any method is empty.
            Some(0xfe) => mysql_write(stream, seq.wrapping_add(1), &[])?,
            // More auth data (caching_sha2_password's fast path result): read on.
            Some(0x01) => {}
            _ => return Ok(Err("an unexpected answer to the login".to_owned())),
        }
    }
}

fn mysql_read(stream: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0_u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    if len > 1 << 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet too long",
        ));
    }
    let mut payload = vec![0_u8; len];
    stream.read_exact(&mut payload)?;
    Ok((header[3], payload))
}

fn mysql_write(stream: &mut TcpStream, seq: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_le_bytes();
    let mut packet = vec![len[0], len[1], len[2], seq];
    packet.extend_from_slice(payload);
    stream.write_all(&packet)
}

/// An ERR packet's code and message (`#` and the SQLSTATE follow the code after the
/// handshake, not in a refused greeting).
fn mysql_error(packet: &[u8]) -> String {
    let code = packet
        .get(1..3)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let mut message = packet.get(3..).unwrap_or_default();
    if message.first() == Some(&b'#') && message.len() >= 6 {
        message = &message[6..];
    }
    format!("{} (error {code})", String::from_utf8_lossy(message))
}

// --- Redis: PING ---

fn redis_ping(port: u16) -> Answer {
    let Ok(mut stream) = connect(port) else {
        return Answer::NotYet;
    };
    if stream.write_all(b"PING\r\n").is_err() {
        return Answer::NotYet;
    }
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(4096);
    if reader.read_until(b'\n', &mut line).is_err() || line.is_empty() {
        return Answer::NotYet;
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
    match line.as_str() {
        "+PONG" => Answer::Ready,
        _ if line.starts_with("-LOADING") => Answer::NotYet,
        _ if line.starts_with('-') => Answer::Refused(line[1..].to_owned()),
        _ => Answer::Refused("this is not a Redis server".to_owned()),
    }
}
