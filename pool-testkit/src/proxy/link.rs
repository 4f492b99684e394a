//! One proxied connection: its upstream connection and the two copy loops between them,
//! each obeying the faults in force.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{reset, Faults, OpenGuard};

/// The most bytes one read takes, and so the largest chunk delayed as one.
const CHUNK_BYTES: usize = 16 * 1024;

/// Chunks read but not yet written, per direction: the reader waits once this many are
/// queued (behind latency or a blackhole), so the kernel's buffers push back on the
/// sender as a slow network would.
const QUEUED_CHUNKS: usize = 64;

/// A connection accepted and not refused, before it runs.
pub(crate) struct Link {
    pub(crate) upstream: SocketAddr,
    pub(crate) faults: watch::Receiver<Faults>,
    /// [`Faults::resets`] when the connection was accepted.
    pub(crate) resets_at_open: u64,
    /// The cut budget in force when it was accepted, with [`Faults::heals`] then.
    pub(crate) budget: Option<(u64, u64)>,
    pub(crate) _open: OpenGuard,
}

/// How a connection ends.
enum End {
    /// Both directions reached their end of stream: close both sockets plainly.
    Closed,
    /// A reset, a cut or an error on either side: reset both sockets.
    Reset,
}

impl Link {
    /// Connects upstream (once no blackhole holds it back), then forwards both ways
    /// until both ends close, an error, a cut or a reset.
    pub(crate) async fn run(self, mut client: TcpStream) {
        let rules = Rules {
            faults: self.faults,
            resets_at_open: self.resets_at_open,
            budget: self.budget,
            forwarded: AtomicU64::new(0),
        };
        if rules.budget() == Some(0) {
            reset(client);
            return;
        }
        let mut reset_asked = pin!(rules.reset_asked());
        let connect = async {
            passing(&mut rules.faults.clone()).await;
            TcpStream::connect(self.upstream).await
        };
        let mut server = tokio::select! {
            biased;
            () = &mut reset_asked => {
                reset(client);
                return;
            }
            connected = connect => match connected {
                Ok(server) => server,
                Err(e) => {
                    tracing::debug!(upstream = %self.upstream, error = %e, "fault proxy: upstream connect failed");
                    reset(client);
                    return;
                }
            },
        };
        // Forward each chunk as it comes, as the peers' own sockets would.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);

        let end = {
            let (client_read, client_write) = client.split();
            let (server_read, server_write) = server.split();
            let up = copy(client_read, server_write, &rules);
            let down = copy(server_read, client_write, &rules);
            tokio::select! {
                biased;
                () = &mut reset_asked => End::Reset,
                both = async { tokio::try_join!(up, down) } => match both {
                    Ok(_) => End::Closed,
                    Err(e) => {
                        tracing::debug!(error = %e, "fault proxy: connection ends with a reset");
                        End::Reset
                    }
                },
            }
        };
        if let End::Reset = end {
            reset(client);
            reset(server);
        }
    }
}

/// The faults as they apply to one connection.
struct Rules {
    faults: watch::Receiver<Faults>,
    resets_at_open: u64,
    budget: Option<(u64, u64)>,
    /// Bytes handed to either socket so far, counted only under a budget.
    forwarded: AtomicU64,
}

impl Rules {
    /// Resolves once [`FaultProxy::reset_all`](super::FaultProxy::reset_all) was called
    /// after the connection was accepted.
    async fn reset_asked(&self) {
        let mut faults = self.faults.clone();
        let since = self.resets_at_open;
        let proxy_gone = faults.wait_for(|f| f.resets > since).await.is_err();
        if proxy_gone {
            // The proxy is being dropped, and this task with it.
            std::future::pending::<()>().await;
        }
    }

    fn reset_pending(&self) -> bool {
        self.faults.borrow().resets > self.resets_at_open
    }

    /// The cut budget, unless a heal lifted it.
    fn budget(&self) -> Option<u64> {
        let (bytes, heals_at_open) = self.budget?;
        (self.faults.borrow().heals == heals_at_open).then_some(bytes)
    }

    /// How many of the next `len` bytes may be forwarded; counts them as forwarded.
    fn reserve(&self, len: usize) -> usize {
        let Some(budget) = self.budget() else {
            return len;
        };
        let wanted = u64::try_from(len).unwrap_or(u64::MAX);
        let mut granted = 0;
        let _ = self
            .forwarded
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |done| {
                granted = wanted.min(budget.saturating_sub(done));
                Some(done + granted)
            });
        usize::try_from(granted).unwrap_or(len)
    }

    /// Whether the budget is spent, so the connection must be cut.
    fn cut_due(&self) -> bool {
        self.budget()
            .is_some_and(|budget| self.forwarded.load(Ordering::SeqCst) >= budget)
    }
}

/// Waits while a blackhole is in force.
async fn passing(faults: &mut watch::Receiver<Faults>) {
    let proxy_gone = faults.wait_for(|f| !f.blackhole).await.is_err();
    if proxy_gone {
        std::future::pending::<()>().await;
    }
}

/// Bytes read from one side, to be written to the other at `due`.
struct Chunk {
    bytes: Vec<u8>,
    due: Instant,
}

/// Copies `from` to `to` until `from` ends (then half-closes `to`), applying latency,
/// blackhole and the cut budget. Reading and writing run side by side, joined by a
/// queue, so latency delays each chunk without slowing the stream down.
///
/// `Ok` at a clean end of stream; `Err` on an IO error, a cut or a reset, after which
/// the caller resets both sockets.
async fn copy(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>, rules: &Rules) -> io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<Chunk>(QUEUED_CHUNKS);
    let mut read_faults = rules.faults.clone();
    let reading = async move {
        let mut last_due = Instant::now();
        loop {
            passing(&mut read_faults).await;
            let mut bytes = vec![0; CHUNK_BYTES];
            let n = from.read(&mut bytes).await?;
            if n == 0 {
                // Dropping the queue's sender lets the writer drain it and half-close.
                return Ok(());
            }
            bytes.truncate(n);
            let delay = read_faults.borrow().latency.sample();
            // Never before an earlier chunk: jitter must not reorder bytes.
            let due = (Instant::now() + delay).max(last_due);
            last_due = due;
            if queue.send(Chunk { bytes, due }).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut write_faults = rules.faults.clone();
    let writing = async move {
        while let Some(chunk) = queued.recv().await {
            if chunk.due > Instant::now() {
                tokio::time::sleep_until(chunk.due).await;
            }
            passing(&mut write_faults).await;
            if rules.reset_pending() {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset_all"));
            }
            let allowed = rules.reserve(chunk.bytes.len());
            to.write_all(&chunk.bytes[..allowed]).await?;
            if rules.cut_due() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "cut after its byte budget",
                ));
            }
        }
        to.shutdown().await
    };
    tokio::try_join!(reading, writing).map(drop)
}
