//! One chaos run, start to finish: set up, load and faults for the duration, stop,
//! heal, account.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use pool_core::Pool;

use super::counting::{Census, Counting};
use super::faults::{self, FaultLog};
use super::load::{self, LoadStats};
use super::monitor::ServerWatch;
use super::network::Network;
use super::recovery::RecoveryLog;
use super::report::{Report, Rows, StatusAfterLoad};
use super::victims::Victims;
use super::{ChaosBackend, ChaosConfig};

/// Everything the load and the faults share.
pub(crate) struct Run<B: ChaosBackend> {
    pub(crate) backend: Arc<B>,
    pub(crate) pool: Pool<Counting<B::Manager>>,
    pub(crate) config: ChaosConfig,
    pub(crate) table: String,
    pub(crate) load: LoadStats,
    pub(crate) victims: Victims,
    pub(crate) recovery: RecoveryLog,
    pub(crate) faults: FaultLog,
    stop_load: AtomicBool,
}

impl<B: ChaosBackend> Run<B> {
    pub(crate) fn load_stopped(&self) -> bool {
        self.stop_load.load(Ordering::SeqCst)
    }
}

/// Aborts a spawned task when dropped, so nothing outlives a run that failed early.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Aborts the task and waits until it has ended.
    async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the chaos run `config` describes against `backend` and reports what it saw.
///
/// `Err` means the run could not be made at all (no server, no proxy, the table could
/// not be created or read); what the pool got wrong is in the [`Report`]. The run's
/// table is dropped at the end whatever happened.
pub async fn run<B: ChaosBackend>(backend: Arc<B>, config: &ChaosConfig) -> Result<Report, String> {
    let table = format!(
        "pool_chaos_{}_{}",
        std::process::id(),
        config.seed % 1_000_000
    );
    let settled = backend.server_connections().await?;
    if settled != 0 {
        return Err(format!(
            "the server already shows {settled} connections of this backend before the run"
        ));
    }
    let network = if config.network_faults {
        let upstream = backend.server_address()?;
        Some(Network::start(upstream).await?)
    } else {
        None
    };
    let manager = match &network {
        Some(network) => backend.manager_at(network.address()).await?,
        None => backend.manager().await,
    };
    backend
        .create_table(&table)
        .await
        .map_err(|e| format!("creating the run's table {table}: {e}"))?;
    let outcome = drive(&backend, config, manager, network, &table).await;
    let dropped = backend.drop_table(&table).await;
    let report = outcome?;
    dropped.map_err(|e| format!("dropping the run's table {table}: {e}"))?;
    Ok(report)
}

async fn drive<B: ChaosBackend>(
    backend: &Arc<B>,
    config: &ChaosConfig,
    manager: B::Manager,
    network: Option<Network>,
    table: &str,
) -> Result<Report, String> {
    let counting = Counting::new(manager);
    let census: Arc<Census> = counting.census();
    let pool = Pool::builder(counting)
        .name(format!("chaos_{}", backend.name()))
        .max_size(config.max_size)
        .min_idle(config.min_idle)
        .wait_timeout(config.wait_timeout)
        .connect_timeout(config.connect_timeout)
        .recycle_timeout(config.recycle_timeout)
        .check_interval(config.check_interval)
        .max_lifetime(config.max_lifetime)
        .connect_backoff_max(config.connect_backoff_max)
        .build()
        .map_err(|e| format!("building the pool: {e}"))?;
    let upkeep = AbortOnDrop(pool.spawn_upkeep());
    let run = Arc::new(Run {
        backend: Arc::clone(backend),
        pool: pool.clone(),
        config: config.clone(),
        table: table.to_owned(),
        load: LoadStats::default(),
        victims: Victims::default(),
        recovery: RecoveryLog::default(),
        faults: FaultLog::default(),
        stop_load: AtomicBool::new(false),
    });
    let network = network.map(Arc::new);
    let watch = Arc::new(ServerWatch::default());
    let mut seeds = fastrand::Rng::with_seed(config.seed);

    let started = Instant::now();
    let end = started + config.duration;
    let faults_until = end - config.calm;
    let watching = AbortOnDrop(tokio::spawn({
        let (watch, run) = (Arc::clone(&watch), Arc::clone(&run));
        async move {
            let context = |at| run.faults.network_context(at);
            watch
                .watch(&*run.backend, run.config.max_size, context)
                .await;
        }
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.tasks {
        let (run, rng) = (Arc::clone(&run), seeds.fork());
        tasks.spawn(async move { load::task(&run, rng).await });
    }
    let mut injectors = tokio::task::JoinSet::new();
    if let Some(network) = &network {
        let (run, network, rng) = (Arc::clone(&run), Arc::clone(network), seeds.fork());
        injectors.spawn(async move {
            faults::network_faults(&run, &network, rng, faults_until).await;
        });
    }
    {
        let (run, rng) = (Arc::clone(&run), seeds.fork());
        injectors.spawn(async move { faults::kills(&run, rng, faults_until).await });
    }

    while let Some(done) = injectors.join_next().await {
        done.map_err(|e| format!("a fault injector failed: {e}"))?;
    }
    tokio::time::sleep_until(end.into()).await;
    // The last fault may have ended just now: give the pool its chance to show it
    // serves again before the load stops (a heal nobody recovered from fails the run).
    let recover_by = Instant::now() + config.settle;
    while run.recovery.pending() && Instant::now() < recover_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();

    // Stop: the load first, then wait for its tasks (a task that does not finish is
    // hung, and is counted).
    run.stop_load.store(true, Ordering::SeqCst);
    if let Some(network) = &network {
        network.heal();
    }
    let stop_by = tokio::time::Instant::now() + config.settle;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(stop_by, tasks.join_next()).await {
            Ok(Some(Ok(()))) | Ok(None) => {}
            Ok(Some(Err(e))) => return Err(format!("a load task failed: {e}")),
            Err(_) => break,
        }
    }
    let hung_tasks = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Upkeep resets dirty idle connections in the background, counting them in use
    // meanwhile: stop it, and wait until it has given back what it held.
    upkeep.stop().await;

    let after_load = quiet_status(&pool, &census, config.settle).await;
    let close_error = pool.close(config.settle).await.err().map(|e| e.to_string());
    let server_after_close = server_drained(&*run.backend, &watch, config.settle).await;
    watch.stop();
    drop(watching);
    let live_after_close = census.live();

    let (rows, rows_error) = match rows(&*run.backend, table, &run.load).await {
        Ok(rows) => (rows, None),
        Err(e) => (Rows::default(), Some(e)),
    };
    let load = &run.load;
    let longest =
        |slot: &std::sync::Mutex<Duration>| *slot.lock().unwrap_or_else(PoisonError::into_inner);
    let (longest_get, longest_wait) = (longest(&load.longest_get), longest(&load.longest_wait));
    Ok(Report {
        backend: backend.name().to_owned(),
        config: config.clone(),
        elapsed,
        gets: load.gets.load(Ordering::SeqCst),
        checkouts: load.checkouts.load(Ordering::SeqCst),
        operations: load.operations.load(Ordering::SeqCst),
        dirtied: load.dirtied.load(Ordering::SeqCst),
        errors: load.errors.counts(),
        faults: run.faults.counts(),
        killed: run.faults.killed.load(Ordering::SeqCst),
        kill_errors: run.faults.kill_errors.counts(),
        proxy_accepted: network.as_ref().map(|n| n.accepted()),
        proxy_open_after_close: network.as_ref().map(|n| n.open_connections()),
        peak_server_connections: watch.peak.load(Ordering::SeqCst),
        peak_server_seen: watch.peak_seen.load(Ordering::SeqCst),
        server_samples: watch.samples.load(Ordering::SeqCst),
        server_count_errors: watch.errors.counts(),
        over_limit_samples: watch.over_limit.counts(),
        over_limit_briefly: watch.over_limit_briefly.counts(),
        peak_client_connections: census.peak(),
        after_load,
        hung_tasks,
        close_error,
        server_connections_after_close: server_after_close,
        live_after_close,
        dirty_handed_out: load.dirty_handed_out.load(Ordering::SeqCst),
        late_gets: load.late_gets.counts(),
        longest_get,
        longest_wait,
        rows,
        rows_error,
        recoveries: run.recovery.recoveries(),
    })
}

/// The pool's counts once nothing is being opened (upkeep is stopped, so nothing new
/// starts), next to the connections that really exist.
async fn quiet_status<M: pool_core::Manager>(
    pool: &Pool<M>,
    census: &Census,
    within: Duration,
) -> StatusAfterLoad {
    let deadline = Instant::now() + within;
    loop {
        let status = pool.status();
        if status.connecting == 0 || Instant::now() >= deadline {
            return StatusAfterLoad {
                status,
                live_connections: census.live(),
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The server's count of this run's connections once it reaches 0, or the last count
/// seen when `within` runs out (`None` if it could never be read).
async fn server_drained<B: ChaosBackend>(
    backend: &B,
    watch: &ServerWatch,
    within: Duration,
) -> Option<usize> {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        if let Some(count) = watch.sample(backend).await {
            last = Some(count);
        }
        if last == Some(0) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the table holds, against what the load wrote.
async fn rows<B: ChaosBackend>(backend: &B, table: &str, load: &LoadStats) -> Result<Rows, String> {
    let present: HashSet<u64> = backend
        .row_ids(table)
        .await
        .map_err(|e| format!("reading the run's table {table}: {e}"))?
        .into_iter()
        .collect();
    let acknowledged: HashSet<u64> = load
        .acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    let handed_out = load.next_row.load(Ordering::SeqCst);
    let mut missing: Vec<u64> = acknowledged.difference(&present).copied().collect();
    missing.sort_unstable();
    let mut unknown: Vec<u64> = present
        .iter()
        .copied()
        .filter(|id| *id >= handed_out)
        .collect();
    unknown.sort_unstable();
    Ok(Rows {
        acknowledged: acknowledged.len() as u64,
        in_table: present.len() as u64,
        committed_unacknowledged: present
            .iter()
            .filter(|id| **id < handed_out && !acknowledged.contains(id))
            .count() as u64,
        missing,
        unknown,
    })
}
