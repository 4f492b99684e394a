//! The fault proxy against a small TCP echo server of the test's own: every fault, the
//! heal, and that dropping the proxy stops everything it started.
//!
//! Timing is asserted only as a lower bound (latency is at least what was asked for);
//! "nothing arrives" is observed over a quiet period, and everything that must happen
//! is awaited with a generous deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_testkit::proxy::FaultProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long anything that must happen may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long a blackholed connection is watched for bytes that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// How an echo connection ended, as the echo server saw it.
#[derive(Debug, PartialEq, Eq)]
enum How {
    Eof,
    Error(io::ErrorKind),
}

#[derive(Debug)]
struct Ended {
    bytes_in: usize,
    how: How,
}

/// A TCP echo server on 127.0.0.1 that reports each connection it accepts and how each
/// ended.
struct Echo {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: mpsc::UnboundedReceiver<Ended>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (report, ended) = mpsc::unbounded_channel();
        let task = tokio::spawn({
            let accepted = Arc::clone(&accepted);
            async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(echo(stream, report.clone()));
                }
            }
        });
        Echo {
            address,
            accepted,
            ended,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The next connection to end.
    async fn next_ended(&mut self) -> Ended {
        tokio::time::timeout(DEADLINE, self.ended.recv())
            .await
            .expect("an echo connection to end within the deadline")
            .expect("the echo server runs")
    }
}

async fn echo(mut stream: TcpStream, report: mpsc::UnboundedSender<Ended>) {
    let mut bytes_in = 0;
    let mut buf = vec![0; 4096];
    let how = loop {
        match stream.read(&mut buf).await {
            Ok(0) => break How::Eof,
            Ok(n) => {
                bytes_in += n;
                if let Err(e) = stream.write_all(&buf[..n]).await {
                    break How::Error(e.kind());
                }
            }
            Err(e) => break How::Error(e.kind()),
        }
    };
    let _ = report.send(Ended { bytes_in, how });
}

/// Connects through the proxy.
async fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.address()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Connects through the proxy to a connection it resets at once: either the connect
/// itself or the first read must fail with a reset (which one depends on whether the
/// reset arrives before the connect returns).
async fn assert_reset_at_once(proxy: &FaultProxy, what: &str) {
    match TcpStream::connect(proxy.address()).await {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e}"),
        Ok(mut stream) => assert_eq!(
            next_read(&mut stream).await,
            Err(io::ErrorKind::ConnectionReset),
            "{what}"
        ),
    }
}

/// Reads exactly `len` bytes, within the deadline.
async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf))
        .await
        .expect("the echo within the deadline")
        .expect("reading the echo");
    buf
}

/// Sends `message` and reads its echo, checking it came back whole.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let echoed = read_exactly(stream, message.len()).await;
    assert!(echoed == message, "the echo differs from what was sent");
}

/// What the next read gives: `Ok(n)` bytes (0 is the end of stream) or the error kind.
async fn next_read(stream: &mut TcpStream) -> Result<usize, io::ErrorKind> {
    let mut buf = [0; 64];
    tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("a read to finish within the deadline")
        .map_err(|e| e.kind())
}

/// Asserts nothing is readable for [`QUIET`].
async fn assert_quiet(stream: &mut TcpStream, what: &str) {
    let mut buf = [0; 64];
    if let Ok(read) = tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
        panic!("{what}: a read finished during the blackhole: {read:?}");
    }
}

/// Polls `done` every 10 ms until it holds, failing after the deadline.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_both_ways_and_counts_connections() {
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    assert!(proxy.address().ip().is_loopback());
    assert_eq!(proxy.upstream(), echo.address);

    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hello").await;
    // Larger than a chunk and than the queue between reads and writes.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.into_split();
    let sender = tokio::spawn({
        let big = big.clone();
        async move {
            write.write_all(&big).await.unwrap();
            write
        }
    });
    let mut echoed = vec![0; big.len()];
    tokio::time::timeout(DEADLINE, read.read_exact(&mut echoed))
        .await
        .expect("the big echo within the deadline")
        .unwrap();
    assert!(echoed == big, "3 MB came back altered");
    let write = sender.await.unwrap();
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.open_connections(), 1);
    assert_eq!(echo.accepted(), 1);

    drop((read, write));
    let ended = echo.next_ended().await;
    assert_eq!(
        ended.how,
        How::Eof,
        "a client's close reaches the server as one"
    );
    assert_eq!(ended.bytes_in, 5 + big.len());
    eventually("the connection to be counted closed", || {
        proxy.open_connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_each_chunk_by_at_least_the_fixed_part_and_keeps_order() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"warm").await;

    let fixed = Duration::from_millis(100);
    proxy.add_latency(fixed, Duration::from_millis(50));
    let started = Instant::now();
    round_trip(&mut client, b"slow").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * fixed,
        "a round trip took {elapsed:?}, less than the latency both ways ({:?})",
        2 * fixed
    );

    // Separate small writes, each its own chunk with its own jitter: they still come
    // back in the order they were sent.
    let sent: Vec<u8> = (0..40).collect();
    for byte in &sent {
        client.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let echoed = read_exactly(&mut client, sent.len()).await;
    assert_eq!(echoed, sent, "jitter reordered bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_holds_bytes_and_new_connections_until_healed() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"before").await;

    proxy.blackhole();
    open.write_all(b"during-").await.unwrap();
    open.write_all(b"blackhole").await.unwrap();
    assert_quiet(&mut open, "an open connection").await;

    let mut new = connect(&proxy).await;
    new.write_all(b"new").await.unwrap();
    assert_quiet(&mut new, "a connection opened during the blackhole").await;
    eventually("the new connection to be accepted and kept open", || {
        proxy.accepted() == 2 && proxy.open_connections() == 2
    })
    .await;
    assert_eq!(
        echo.accepted(),
        1,
        "a connection opened during the blackhole reached the server"
    );

    proxy.heal();
    assert_eq!(
        read_exactly(&mut open, 16).await,
        b"during-blackhole",
        "held bytes come through whole and in order"
    );
    assert_eq!(read_exactly(&mut new, 3).await, b"new");
    assert_eq!(echo.accepted(), 2);
    round_trip(&mut open, b"after").await;
    round_trip(&mut new, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_resets_both_sides_of_open_connections_only() {
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    round_trip(&mut first, b"one").await;
    round_trip(&mut second, b"two").await;

    proxy.reset_all();
    for client in [&mut first, &mut second] {
        assert_eq!(
            next_read(client).await,
            Err(io::ErrorKind::ConnectionReset),
            "the client sees a reset, not an end of stream"
        );
    }
    for _ in 0..2 {
        let ended = echo.next_ended().await;
        assert_eq!(
            ended.how,
            How::Error(io::ErrorKind::ConnectionReset),
            "the server sees a reset, not an end of stream"
        );
    }
    eventually("the reset connections to be counted closed", || {
        proxy.open_connections() == 0
    })
    .await;

    let mut later = connect(&proxy).await;
    round_trip(&mut later, b"later").await;
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_resets_new_connections_counts_them_and_spares_open_ones() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"open").await;

    proxy.refuse();
    for attempt in 1..=3 {
        assert_reset_at_once(&proxy, &format!("refused attempt {attempt}")).await;
    }
    assert_eq!(proxy.accepted(), 4, "refused connects are counted");
    assert_eq!(echo.accepted(), 1, "a refused connect reached the server");
    round_trip(&mut open, b"still open").await;

    proxy.heal();
    let mut healed = connect(&proxy).await;
    round_trip(&mut healed, b"healed").await;
    assert_eq!(proxy.accepted(), 5);
    assert_eq!(echo.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_resets_new_connections_once_their_budget_is_spent() {
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let mut before = connect(&proxy).await;
    round_trip(&mut before, b"opened before the cut").await;

    proxy.cut_after(10);
    let mut cut = connect(&proxy).await;
    round_trip(&mut cut, b"1234").await; // 8 bytes forwarded: 4 out, 4 back
    cut.write_all(b"5678").await.unwrap(); // 2 more reach the server, then the cut
    assert_eq!(
        next_read(&mut cut).await,
        Err(io::ErrorKind::ConnectionReset),
        "the client sees the cut as a reset, with nothing past the budget"
    );
    let ended = echo.next_ended().await;
    assert_eq!(ended.how, How::Error(io::ErrorKind::ConnectionReset));
    assert!(
        (4..=6).contains(&ended.bytes_in),
        "the server got {} bytes: more than the 10-byte budget allows",
        ended.bytes_in
    );

    round_trip(&mut before, &[7; 100]).await;

    proxy.cut_after(0);
    assert_reset_at_once(&proxy, "a zero budget").await;
    assert_eq!(echo.accepted(), 2, "a zero budget reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_restores_a_clean_pass_through() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    proxy.cut_after(5);
    let mut budgeted = connect(&proxy).await;
    eventually("the connection to be accepted", || proxy.accepted() == 1).await;
    proxy.add_latency(Duration::from_millis(200), Duration::from_millis(100));
    proxy.blackhole();
    proxy.refuse();

    proxy.heal();
    round_trip(&mut budgeted, &[1; 100]).await;
    let mut fresh = connect(&proxy).await;
    round_trip(&mut fresh, &[2; 100_000]).await;
    assert_eq!(echo.accepted(), 2);
    assert_eq!(proxy.open_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_listener_and_connections() {
    let mut echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.address).await.unwrap();
    let address = proxy.address();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"alive").await;

    drop(proxy);
    assert_eq!(
        next_read(&mut client).await,
        Ok(0),
        "the client's connection is closed"
    );
    assert_eq!(echo.next_ended().await.how, How::Eof);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match TcpStream::connect(address).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the listener still accepts after the drop: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
