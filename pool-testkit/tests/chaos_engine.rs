//! The chaos run's engine on the mock backend (kills only: the mock has no TCP address
//! for a proxy): a sound pool passes, and each kind of wrong the run must catch fails
//! it, shown with a backend that does that wrong on purpose.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_testkit::chaos::{self, ChaosBackend, ChaosConfig, Report};
use pool_testkit::conformance::Backend;
use pool_testkit::mock::{MockBackend, MockConnection, MockManager};

/// What the mock backend does wrong on purpose.
#[derive(Clone, Copy, Default)]
struct Wrongs {
    /// Acknowledges every n-th write without storing it.
    lose_every: Option<u64>,
    /// Dirties sessions in a way the manager cannot see, so the pool never resets them.
    hidden_dirt: bool,
}

/// The mock backend with a table store and some wrongs to show.
struct MockChaos {
    mock: MockBackend,
    tables: Mutex<HashMap<String, BTreeSet<u64>>>,
    /// Server ids of sessions dirtied behind the manager's back.
    hidden_dirty: Mutex<HashSet<u64>>,
    wrongs: Wrongs,
}

impl MockChaos {
    fn new(wrongs: Wrongs) -> Self {
        let mock = MockBackend::new();
        // A round trip takes a little time, as it does on a network, so the load
        // does not spin.
        mock.control().query_delay(Duration::from_millis(2));
        MockChaos {
            mock,
            tables: Mutex::default(),
            hidden_dirty: Mutex::default(),
            wrongs,
        }
    }
}

#[async_trait::async_trait]
impl Backend for MockChaos {
    type Manager = MockManager;
    fn name(&self) -> &'static str {
        "mock"
    }
    fn wrong_credentials_message(&self) -> String {
        self.mock.wrong_credentials_message()
    }
    async fn manager(&self) -> MockManager {
        self.mock.manager().await
    }
    async fn manager_with_wrong_credentials(&self) -> MockManager {
        self.mock.manager_with_wrong_credentials().await
    }
    async fn round_trip(&self, conn: &mut MockConnection) -> Result<(), String> {
        self.mock.round_trip(conn).await
    }
    async fn dirty_session(&self, conn: &mut MockConnection) -> Result<(), String> {
        if self.wrongs.hidden_dirt {
            self.hidden_dirty.lock().unwrap().insert(conn.id());
            Ok(())
        } else {
            self.mock.dirty_session(conn).await
        }
    }
    async fn is_clean(&self, conn: &mut MockConnection) -> Result<bool, String> {
        let hidden = self.hidden_dirty.lock().unwrap().contains(&conn.id());
        Ok(!hidden && self.mock.is_clean(conn).await?)
    }
    async fn server_id(&self, conn: &mut MockConnection) -> Result<u64, String> {
        self.mock.server_id(conn).await
    }
    async fn kill(&self, server_id: u64) -> Result<(), String> {
        self.mock.kill(server_id).await
    }
    async fn server_connections(&self) -> Result<usize, String> {
        self.mock.server_connections().await
    }
    async fn restartable_manager(&self) -> Result<MockManager, String> {
        self.mock.restartable_manager().await
    }
    async fn stop_restartable(&self) -> Result<(), String> {
        self.mock.stop_restartable().await
    }
    async fn start_restartable(&self) -> Result<(), String> {
        self.mock.start_restartable().await
    }
}

#[async_trait::async_trait]
impl ChaosBackend for MockChaos {
    async fn create_table(&self, table: &str) -> Result<(), String> {
        self.tables
            .lock()
            .unwrap()
            .insert(table.to_owned(), BTreeSet::new());
        Ok(())
    }
    async fn write_row(
        &self,
        conn: &mut MockConnection,
        table: &str,
        id: u64,
    ) -> Result<(), String> {
        conn.query().await.map_err(|e| e.to_string())?;
        let lost = self.wrongs.lose_every.is_some_and(|n| id.is_multiple_of(n));
        if !lost {
            let mut tables = self.tables.lock().unwrap();
            let rows = tables.get_mut(table).ok_or("no such table")?;
            rows.insert(id);
        }
        Ok(())
    }
    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String> {
        let tables = self.tables.lock().unwrap();
        let rows = tables.get(table).ok_or("no such table")?;
        Ok(rows.iter().copied().collect())
    }
    async fn drop_table(&self, table: &str) -> Result<(), String> {
        self.tables.lock().unwrap().remove(table);
        Ok(())
    }
}

fn short_run() -> ChaosConfig {
    ChaosConfig {
        duration: Duration::from_secs(3),
        calm: Duration::from_millis(750),
        seed: 11,
        network_faults: false,
        settle: Duration::from_secs(10),
        ..ChaosConfig::default()
    }
}

async fn run(wrongs: Wrongs) -> Report {
    let backend = Arc::new(MockChaos::new(wrongs));
    let report = chaos::run(Arc::clone(&backend), &short_run())
        .await
        .expect("the run could be made");
    println!("{report}");
    assert!(
        backend.tables.lock().unwrap().is_empty(),
        "the run's table was not dropped"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_pool_passes_under_kills() {
    let report = run(Wrongs::default()).await;
    assert_eq!(report.failures(), Vec::<String>::new());
    assert!(report.operations > 0);
    assert!(report.killed > 0, "no kills were injected");
    assert!(report.dirtied > 0, "no session was left dirty");
    assert!(report.peak_server_connections > 0);
    assert!(report.recoveries.iter().all(|r| r.after.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acknowledged_rows_fail_the_run() {
    let report = run(Wrongs {
        lose_every: Some(10),
        ..Wrongs::default()
    })
    .await;
    assert!(!report.rows.missing.is_empty());
    assert!(report.rows.missing.iter().all(|id| id.is_multiple_of(10)));
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].contains("acknowledged rows missing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_sessions_handed_out_fail_the_run() {
    let report = run(Wrongs {
        hidden_dirt: true,
        ..Wrongs::default()
    })
    .await;
    assert!(report.dirty_handed_out > 0);
    assert!(report
        .failures()
        .iter()
        .any(|f| f.contains("dirty connections handed out")));
}
