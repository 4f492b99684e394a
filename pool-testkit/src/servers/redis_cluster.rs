//! A throwaway Redis Cluster: three (or more) masters, each a throwaway
//! `redis-server --cluster-enabled yes` in a directory of its own on free ports of
//! 127.0.0.1, joined into one cluster with `redis-cli --cluster create`.
//!
//! Each node is a [`Server`] like any other throwaway one: it stops and removes its
//! directory (its `nodes.conf` included) when dropped, and stops when the test process
//! ends in any way. Nodes keep no data (`--save "" --appendonly no`); their cluster
//! configuration survives a stop, so [`RedisCluster::stop`] and [`RedisCluster::start`]
//! give back the same cluster (the same nodes, ports and slots, now empty).
//!
//! Every function here blocks; from async code run it on a blocking thread.
//!
//! ```no_run
//! let cluster = pool_testkit::servers::redis_cluster()?;
//! for url in cluster.urls() {
//!     println!("{url}"); // redis://127.0.0.1:PORT, one per master
//! }
//! # Ok::<(), pool_testkit::servers::ServerError>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{self, Throwaway};
use super::{Database, Server, ServerError, Source};

/// The fewest masters `redis-cli --cluster create` accepts.
const MIN_MASTERS: usize = 3;
/// How long the nodes may take to agree on one cluster with every slot served, after
/// they were joined or started again.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `redis-cli --cluster create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may be unreachable before its peers flag it as failing. The
/// default (15 s) is for real networks; throwaway nodes on one machine answer at once.
const NODE_TIMEOUT_MS: &str = "5000";
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A throwaway Redis Cluster of masters only, every slot served. Dropping it stops every
/// node and removes their directories.
pub struct RedisCluster {
    nodes: Vec<Server>,
}

/// A new throwaway cluster of three masters, joined and serving every slot.
pub fn redis_cluster() -> Result<RedisCluster, ServerError> {
    RedisCluster::with_masters(MIN_MASTERS)
}

impl RedisCluster {
    /// A new throwaway cluster of `masters` masters (at least three), no replicas: the
    /// nodes are started, joined with `redis-cli --cluster create ... --cluster-replicas
    /// 0 --cluster-yes`, and this returns once `CLUSTER INFO` says `cluster_state:ok`
    /// on every node and every node knows every other. Needs `redis-server` (package
    /// `redis-server`) and `redis-cli` (package `redis-tools`).
    pub fn with_masters(masters: usize) -> Result<RedisCluster, ServerError> {
        if masters < MIN_MASTERS {
            return Err(ServerError::Failed {
                context: format!(
                    "a Redis Cluster needs at least {MIN_MASTERS} masters, not {masters}"
                ),
                log_tail: String::new(),
            });
        }
        let cli = find_redis_cli()?;
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(start_node()?);
        }
        let cluster = RedisCluster { nodes };
        cluster.join(&cli)?;
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// The nodes, in the order they were created.
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// The nodes' TCP ports on 127.0.0.1.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().filter_map(Server::port).collect()
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT` (no password): the seed nodes a
    /// cluster client starts from.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.url().to_owned())
            .collect()
    }

    /// Stops every node and waits until each has exited (see [`Server::stop`]): every
    /// connection to the cluster dies and new connects are refused.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        let mut first_error = None;
        for node in &mut self.nodes {
            if let Err(error) = node.stop() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts every stopped node again, on the same ports and cluster configuration,
    /// and waits until the cluster is whole again (`cluster_state:ok` everywhere).
    pub fn start(&mut self) -> Result<(), ServerError> {
        for node in &mut self.nodes {
            node.start()?;
        }
        self.wait_until_ok()
    }

    /// `redis-cli --cluster create` over every node, slots split evenly.
    fn join(&self, cli: &Path) -> Result<(), ServerError> {
        let log_dir = self.nodes[0].dir().unwrap_or_else(|| Path::new("."));
        let log = log_dir.join("cluster-create.log");
        let file =
            File::create(&log).map_err(|e| io_error(format!("create {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| io_error(format!("open {}", log.display()), e))?;
        let mut command = Command::new(cli);
        command
            .args(["--cluster", "create"])
            .args(self.ports().iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        let mut child = command
            .spawn()
            .map_err(|e| io_error(format!("run {}", cli.display()), e))?;
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ServerError::Failed {
                        context: format!(
                            "redis-cli --cluster create did not finish within {} s",
                            CREATE_TIMEOUT.as_secs()
                        ),
                        log_tail: read_tail(&log),
                    });
                }
                Err(e) => return Err(io_error("wait for redis-cli".into(), e)),
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(ServerError::Failed {
                context: format!("redis-cli --cluster create failed ({status})"),
                log_tail: read_tail(&log),
            })
        }
    }

    /// Polls `CLUSTER INFO` on every node until each says `cluster_state:ok` and knows
    /// all the nodes, or fails with what the last node not there yet said.
    fn wait_until_ok(&self) -> Result<(), ServerError> {
        let ports = self.ports();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut waiting_for = None;
            for &port in &ports {
                match cluster_info(port) {
                    Ok(info) if is_whole(&info, ports.len()) => {}
                    Ok(info) => {
                        waiting_for = Some(format!("127.0.0.1:{port} says {}", summary(&info)));
                        break;
                    }
                    Err(e) => {
                        waiting_for = Some(format!("127.0.0.1:{port}: CLUSTER INFO failed: {e}"));
                        break;
                    }
                }
            }
            let Some(last) = waiting_for else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(ServerError::Failed {
                    context: format!(
                        "the Redis Cluster on ports {ports:?} was not whole within {} s: {last}",
                        READY_TIMEOUT.as_secs()
                    ),
                    log_tail: String::new(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// One throwaway node with cluster mode on. Its cluster bus gets a port of its own:
/// the default, the node's port + 10000, may be taken or past 65535.
fn start_node() -> Result<Server, ServerError> {
    let bus_port = process::free_port()?;
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        &bus_port.to_string(),
        "--cluster-node-timeout",
        NODE_TIMEOUT_MS,
    ]
    .map(str::to_owned)
    .to_vec();
    let throwaway = Throwaway::create_with_args(Database::Redis, args)?;
    let port = throwaway.port();
    Ok(Server {
        database: Database::Redis,
        url: Database::Redis.local_url(port, ""),
        source: Source::Throwaway,
        port: Some(port),
        throwaway: Some(throwaway),
    })
}

/// Whether a node's `CLUSTER INFO` shows a whole cluster of `nodes` nodes.
fn is_whole(info: &str, nodes: usize) -> bool {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
    };
    field("cluster_state") == Some("ok")
        && field("cluster_slots_assigned") == Some("16384")
        && field("cluster_known_nodes").and_then(|n| n.parse().ok()) == Some(nodes)
}

/// The fields of `CLUSTER INFO` that say how far the cluster is, for messages.
fn summary(info: &str) -> String {
    info.lines()
        .map(str::trim)
        .filter(|line| {
            [
                "cluster_state:",
                "cluster_slots_assigned:",
                "cluster_known_nodes:",
            ]
            .iter()
            .any(|name| line.starts_with(name))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `CLUSTER INFO` on the node at 127.0.0.1:`port`, as text.
fn cluster_info(port: u16) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"CLUSTER INFO\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let header = header.trim_end();
    let unexpected = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if let Some(error) = header.strip_prefix('-') {
        return Err(unexpected(error));
    }
    let len: usize = header
        .strip_prefix('$')
        .and_then(|len| len.parse().ok())
        .ok_or_else(|| unexpected(&format!("unexpected reply `{header}`")))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `redis-cli`, on `PATH` or in the usual directories.
fn find_redis_cli() -> Result<PathBuf, ServerError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.iter()
        .map(|dir| dir.join("redis-cli"))
        .find(|path| path.is_file())
        .ok_or_else(|| ServerError::MissingBinary {
            database: Database::Redis,
            binary: "redis-cli",
            looked_in: "PATH, /usr/bin and /usr/local/bin".into(),
            package: "redis-tools",
        })
}

/// The last lines (up to 30) of a log.
fn read_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn io_error(context: String, source: io::Error) -> ServerError {
    ServerError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_cluster_is_recognised() {
        let whole = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:3\r\n";
        assert!(is_whole(whole, 3));
        assert!(!is_whole(whole, 4));
        let failing =
            "cluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:3\r\n";
        assert!(!is_whole(failing, 3));
        assert_eq!(
            summary(failing),
            "cluster_state:fail cluster_slots_assigned:16384 cluster_known_nodes:3"
        );
    }

    #[test]
    fn fewer_than_three_masters_is_an_error() {
        let err = RedisCluster::with_masters(2).unwrap_err();
        assert!(err.to_string().contains("at least 3 masters"), "{err}");
    }
}
