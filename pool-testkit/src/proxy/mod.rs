//! A TCP proxy that injects network faults between a pool and its server, controlled
//! while it runs.
//!
//! [`FaultProxy`] listens on a free port of 127.0.0.1 and forwards each connection it
//! accepts to an upstream address, byte for byte, through tokio copy loops in the test's
//! own process (no toxiproxy, no `tc netem`: neither is available everywhere the tests
//! run). A test points a manager at [`FaultProxy::address`] instead of the server and
//! then adds latency, blackholes, resets, refuses or cuts connections, and heals.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use pool_testkit::proxy::FaultProxy;
//!
//! let proxy = FaultProxy::start(server).await?;
//! // ... build a pool whose manager connects to proxy.address() ...
//! proxy.add_latency(Duration::from_millis(50), Duration::from_millis(10));
//! proxy.blackhole();
//! proxy.heal();
//! proxy.reset_all();
//! # Ok(())
//! # }
//! ```
//!
//! What the proxy guarantees, fault by fault, is stated on each method. In short:
//! bytes are never lost, duplicated or reordered by a fault that keeps a connection
//! (latency, blackhole); a fault that ends a connection (reset, refusal, cut) ends it on
//! both sides with a TCP reset (a zero-linger close), never with a clean end of stream.

mod link;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long the accept loop pauses after an accept error (out of file descriptors,
/// say) before accepting again, so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The latency added to each forwarded chunk: `fixed` plus a random `0..=jitter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Latency {
    pub(crate) fixed: Duration,
    pub(crate) jitter: Duration,
}

impl Latency {
    /// One chunk's delay.
    pub(crate) fn sample(self) -> Duration {
        let jitter = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.fixed + Duration::from_nanos(fastrand::u64(..=jitter))
    }
}

/// The faults in force, shared with every connection through a watch channel so a
/// change (a heal, a reset) reaches connections that are waiting.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) latency: Latency,
    pub(crate) blackhole: bool,
    pub(crate) refuse: bool,
    pub(crate) cut_after: Option<u64>,
    /// How many times [`FaultProxy::reset_all`] was called: a connection opened when
    /// it was `n` is reset once it is above `n`.
    pub(crate) resets: u64,
    /// How many times [`FaultProxy::heal`] was called: a cut budget given to a
    /// connection when it was `n` is lifted once it is above `n`.
    pub(crate) heals: u64,
}

/// What the proxy and its tasks share.
struct Control {
    faults: watch::Sender<Faults>,
    open: AtomicUsize,
    accepted: AtomicU64,
    upstream: SocketAddr,
}

/// Counts a connection as open for as long as its task holds this (its task's end or
/// abort drops it).
pub(crate) struct OpenGuard(Arc<Control>);

impl OpenGuard {
    fn new(control: &Arc<Control>) -> Self {
        control.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(control))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP proxy on 127.0.0.1 that forwards to one upstream address and injects faults on
/// command: latency, blackhole, reset, refusal, cut after N bytes, and heal.
///
/// Each accepted connection gets its own connection to the upstream address and a task
/// that copies bytes both ways, in order. The faults apply to every connection, open
/// or new, as each method says; [`heal`](Self::heal) lifts them all.
///
/// Every task of the proxy runs on the tokio runtime that called
/// [`start`](Self::start). Dropping the proxy stops them all: the listener closes (new
/// connects are refused by the kernel) and every forwarded connection is closed on both
/// sides with a plain close (an end of stream, not a reset), as soon as the runtime
/// next runs those tasks (at once on a running runtime; a runtime shutting down drops
/// them too). Bytes the proxy held (under latency or a blackhole) are dropped with it.
pub struct FaultProxy {
    address: SocketAddr,
    control: Arc<Control>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.address)
            .field("upstream", &self.control.upstream)
            .field("faults", &*self.control.faults.borrow())
            .field("open_connections", &self.open_connections())
            .field("accepted", &self.accepted())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards each accepted connection to
    /// `upstream`.
    ///
    /// Its tasks run on the current tokio runtime and all stop when the proxy is
    /// dropped. The upstream connection of each accepted connection is opened when it
    /// is accepted (or, under a [`blackhole`](Self::blackhole), once healed); if it
    /// cannot be opened, the accepted connection is reset.
    ///
    /// # Errors
    /// The error of binding the listener.
    ///
    /// # Panics
    /// Outside a tokio runtime (with its IO and timer drivers enabled).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let control = Arc::new(Control {
            faults: watch::Sender::new(Faults::default()),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            upstream,
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&control)));
        Ok(FaultProxy {
            address,
            control,
            accept_task,
        })
    }

    /// The address to connect to instead of the upstream one.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.control.upstream
    }

    /// Delays each forwarded chunk by `fixed` plus a random `0..=jitter` (both
    /// directions; order kept).
    ///
    /// Replaces any latency set before. It applies to chunks the proxy reads from now
    /// on, on open and new connections alike; a chunk is written no sooner than
    /// `fixed` after it was read, and never before a chunk read earlier in the same
    /// direction (so with jitter a chunk may wait a little longer than its own draw, to
    /// keep the byte order). Chunks already read keep the delay they were given.
    pub fn add_latency(&self, fixed: Duration, jitter: Duration) {
        self.control
            .faults
            .send_modify(|f| f.latency = Latency { fixed, jitter });
    }

    /// Keeps every socket (open and new) open but forwards nothing, until healed.
    ///
    /// Like a network partition that TCP rides out: the proxy stops reading and
    /// writing, so what the peers send waits in the kernel's buffers (and once those
    /// are full, the senders' writes wait too); the chunks the proxy had already read
    /// (at most one in flight per direction, plus those held back by latency) are held.
    /// Nothing is dropped: on [`heal`](Self::heal) the held bytes are delivered, in
    /// order, followed by whatever the peers sent meanwhile. A peer that closes its end
    /// during the blackhole is therefore noticed only after the heal, as across a
    /// partition.
    ///
    /// New connections are still accepted (the client's connect completes, as it
    /// would against a listen backlog) and counted, but their upstream connection is
    /// opened only once healed: until then the server does not see them. A
    /// [`reset_all`](Self::reset_all) during a blackhole still resets at once.
    pub fn blackhole(&self) {
        self.control.faults.send_modify(|f| f.blackhole = true);
    }

    /// Resets every open connection now: a zero-linger close of both its sockets, so
    /// the client and the server each see a TCP reset (`ECONNRESET`), not an end of
    /// stream.
    ///
    /// Every connection the proxy has accepted so far is marked before this returns:
    /// none starts forwarding another chunk, and its task closes both sockets with a
    /// reset as soon as the runtime runs it (at once on a running runtime). A write
    /// already under way on another worker thread at this instant may still complete.
    /// Connections accepted afterwards are not affected.
    pub fn reset_all(&self) {
        self.control.faults.send_modify(|f| f.resets += 1);
    }

    /// New connections from now on are reset at once (counted in
    /// [`accepted`](Self::accepted)); open ones are untouched.
    ///
    /// A refused connection never reaches the server. The client's TCP connect itself
    /// completes (the kernel accepts it before the proxy sees it), and its first read
    /// or write fails with a reset: to a client, a server that refuses at once.
    pub fn refuse(&self) {
        self.control.faults.send_modify(|f| f.refuse = true);
    }

    /// Connections opened from now on are reset after forwarding `bytes` bytes (both
    /// directions counted).
    ///
    /// Exactly `bytes` bytes are handed to the sockets (a chunk that crosses the budget
    /// is cut at it), then both sockets are closed with a reset. With a reset the
    /// kernel may discard bytes not yet read by the peer, so a peer may see fewer than
    /// that, never more. `cut_after(0)` resets new connections before the server is
    /// reached. Open connections keep the budget they had (none, or an earlier one).
    pub fn cut_after(&self, bytes: u64) {
        self.control
            .faults
            .send_modify(|f| f.cut_after = Some(bytes));
    }

    /// Back to a clean pass-through: no latency, blackhole, refusal or cut.
    ///
    /// Held bytes flow again at once, in order (chunks already delayed by latency keep
    /// their due time); connections waiting for their upstream connection open it; cut
    /// budgets of open connections are lifted. Connections already reset stay closed.
    pub fn heal(&self) {
        self.control.faults.send_modify(|f| {
            *f = Faults {
                resets: f.resets,
                heals: f.heals + 1,
                ..Faults::default()
            }
        });
    }

    /// Connections open through the proxy now: accepted, not refused, and not yet
    /// closed on both sides (or reset).
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since start, refused ones included (a count of connect
    /// attempts).
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the listener and the set of connection tasks: aborting
        // it drops both, and dropping the set aborts every connection task.
        self.accept_task.abort();
    }
}

/// Accepts connections until aborted, refusing them or handing each to a task of its
/// own in a set that is dropped (aborting them all) with this future.
async fn accept_loop(listener: TcpListener, control: Arc<Control>) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    control.accepted.fetch_add(1, Ordering::SeqCst);
                    let faults = control.faults.borrow().clone();
                    if faults.refuse {
                        reset(client);
                        continue;
                    }
                    let link = link::Link {
                        upstream: control.upstream,
                        faults: control.faults.subscribe(),
                        resets_at_open: faults.resets,
                        budget: faults.cut_after.map(|bytes| (bytes, faults.heals)),
                        _open: OpenGuard::new(&control),
                    };
                    links.spawn(link.run(client));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fault proxy: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
}

/// Closes `stream` with a TCP reset instead of a clean end of stream.
pub(crate) fn reset(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "fault proxy: cannot set a zero linger; closing plainly");
    }
    drop(stream);
}
