//! What a chaos run saw, printed per backend, and which of it fails the run.

use std::fmt;
use std::time::Duration;

use pool_core::Status;

use super::recovery::Recovery;
use super::tally::ErrorCount;
use super::ChaosConfig;

/// How the pool stood once the load had stopped and the faults were healed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusAfterLoad {
    /// The pool's own counts, once nothing was being opened.
    pub status: Status,
    /// The connections that existed then, counted by the manager as it opened them and
    /// as the pool dropped them.
    pub live_connections: usize,
}

/// What the run's table holds, against what the load wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows {
    /// Ids whose transaction was acknowledged.
    pub acknowledged: u64,
    /// Ids in the table.
    pub in_table: u64,
    /// Ids in the table whose transaction failed from the client's side (the commit
    /// reached the server, its answer did not reach the client): allowed.
    pub committed_unacknowledged: u64,
    /// Acknowledged ids not in the table: must be none.
    pub missing: Vec<u64>,
    /// Ids in the table that the load never handed out: must be none.
    pub unknown: Vec<u64>,
}

/// Everything one chaos run measured. [`Display`](fmt::Display) prints it;
/// [`failures`](Self::failures) says what fails the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The backend's name.
    pub backend: String,
    /// The run's settings (with its seed).
    pub config: ChaosConfig,
    /// How long the load ran.
    pub elapsed: Duration,
    /// `get` calls that returned, either way.
    pub gets: u64,
    /// `get` calls that returned a connection.
    pub checkouts: u64,
    /// Transactions committed and acknowledged.
    pub operations: u64,
    /// Sessions the load left dirty on purpose.
    pub dirtied: u64,
    /// The load's errors by kind.
    pub errors: Vec<ErrorCount>,
    /// Faults injected, by name.
    pub faults: Vec<(&'static str, u64)>,
    /// Connections killed server-side.
    pub killed: u64,
    /// Kills that failed (their connection was already gone), by kind.
    pub kill_errors: Vec<ErrorCount>,
    /// Connections the proxy accepted from the pool (`None` without a proxy).
    pub proxy_accepted: Option<u64>,
    /// Connections still open through the proxy after close.
    pub proxy_open_after_close: Option<usize>,
    /// The highest count of this run's connections the server showed that lasted: a
    /// count above `max_size` lasted if a second count a moment later was above it
    /// too (see [`over_limit_briefly`](Self::over_limit_briefly) for those that did
    /// not).
    pub peak_server_connections: usize,
    /// The highest count the server showed at all.
    pub peak_server_seen: usize,
    /// How many times the server's count was read.
    pub server_samples: u64,
    /// Failures to read the server's count, by kind.
    pub server_count_errors: Vec<ErrorCount>,
    /// Server-side counts above `max_size` that lasted, by what the proxy faults were
    /// doing when the count was asked for.
    pub over_limit_samples: Vec<ErrorCount>,
    /// Server-side counts above `max_size` gone a moment later, by what the proxy
    /// faults were doing: the server learning late of connections the client had
    /// closed (right after a blackhole heals, all at once).
    pub over_limit_briefly: Vec<ErrorCount>,
    /// The most connections that existed at once on the client's side.
    pub peak_client_connections: usize,
    /// The pool once the load stopped.
    pub after_load: StatusAfterLoad,
    /// Load tasks that did not stop within the settle time (hung).
    pub hung_tasks: usize,
    /// What `close` said, if it did not close everything in time.
    pub close_error: Option<String>,
    /// The server's count after close (`None` if it could not be read).
    pub server_connections_after_close: Option<usize>,
    /// Connections still alive on the client's side after close.
    pub live_after_close: usize,
    /// Checkouts whose session was not clean.
    pub dirty_handed_out: u64,
    /// `get` calls that waited longer than the wait timeout plus the margin, by how
    /// they ended. A `get`'s waiting is its time outside the driver's connects and
    /// checks, which `connect_timeout` and `recycle_timeout` bound separately.
    pub late_gets: Vec<ErrorCount>,
    /// The longest `get` in all.
    pub longest_get: Duration,
    /// The longest a `get` waited.
    pub longest_wait: Duration,
    /// The table against the acknowledgements.
    pub rows: Rows,
    /// Why the table could not be read, if it could not (then `rows` is empty and the
    /// run fails: nothing vouches for the acknowledged rows).
    pub rows_error: Option<String>,
    /// Each fault's end and how long until the pool served again.
    pub recoveries: Vec<Recovery>,
}

/// Faults that end by a kill rather than by healing the proxy.
fn is_kill(fault: &str) -> bool {
    fault.starts_with("kill")
}

impl Report {
    /// Leaked slots: connections counted in use once the load stopped, a pool size
    /// that differs from the connections that exist, and connections left on either
    /// side after close.
    pub fn leaked_slots(&self) -> usize {
        let after = &self.after_load;
        let mismatch = after.status.size.abs_diff(after.live_connections);
        let server_left = self.server_connections_after_close.unwrap_or(0);
        after.status.in_use + mismatch + server_left + self.live_after_close
    }

    /// `get` calls that waited longer than the wait timeout plus the margin.
    pub fn late_get_count(&self) -> u64 {
        self.late_gets.iter().map(|late| late.count).sum()
    }

    /// Heals no successful checkout followed.
    pub fn unrecovered(&self) -> usize {
        self.recoveries.iter().filter(|r| r.after.is_none()).count()
    }

    /// Why the run fails; empty if it passes.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let max_size = self.config.max_size;
        if self.operations == 0 {
            failures.push("no transaction committed: the load never ran".to_owned());
        }
        if self.proxy_accepted == Some(0) {
            failures.push(
                "the pool never connected through the fault proxy: its faults reached \
                 nothing"
                    .to_owned(),
            );
        }
        if self.server_samples == 0 {
            failures.push("the server's connection count was never read".to_owned());
        }
        if self.peak_server_connections > max_size {
            failures.push(format!(
                "the server had {} connections, more than max_size {max_size}",
                self.peak_server_connections
            ));
        }
        if self.peak_client_connections > max_size {
            failures.push(format!(
                "{} connections existed at once on the client side, more than max_size \
                 {max_size}",
                self.peak_client_connections
            ));
        }
        if self.server_connections_after_close.is_none() {
            failures.push("the server's connection count after close could not be read".into());
        }
        if self.close_error.is_some() {
            failures.push(format!(
                "close did not finish: {}",
                self.close_error.as_deref().unwrap_or_default()
            ));
        }
        let leaked = self.leaked_slots();
        if leaked > 0 {
            failures.push(format!("{leaked} leaked slots ({})", self.leak_detail()));
        }
        if self.hung_tasks > 0 {
            failures.push(format!(
                "{} load tasks did not stop within {:?}",
                self.hung_tasks, self.config.settle
            ));
        }
        if self.dirty_handed_out > 0 {
            failures.push(format!(
                "{} dirty connections handed out",
                self.dirty_handed_out
            ));
        }
        let late = self.late_get_count();
        if late > 0 {
            failures.push(format!(
                "{late} gets waited longer than the wait timeout {} (+{} margin)",
                human(self.config.wait_timeout),
                human(self.config.scheduling_margin)
            ));
        }
        if let Some(e) = &self.rows_error {
            failures.push(format!("the table could not be read back: {e}"));
        }
        if !self.rows.missing.is_empty() {
            failures.push(format!(
                "{} acknowledged rows missing from the table (first: {:?})",
                self.rows.missing.len(),
                &self.rows.missing[..self.rows.missing.len().min(10)]
            ));
        }
        if !self.rows.unknown.is_empty() {
            failures.push(format!(
                "{} rows in the table that the load never wrote (first: {:?})",
                self.rows.unknown.len(),
                &self.rows.unknown[..self.rows.unknown.len().min(10)]
            ));
        }
        let unrecovered = self.unrecovered();
        if unrecovered > 0 {
            failures.push(format!(
                "no transaction committed after the last {unrecovered} faults ended: the \
                 pool did not recover within {:?}",
                self.config.settle
            ));
        }
        failures
    }

    fn leak_detail(&self) -> String {
        let after = &self.after_load;
        let server = match self.server_connections_after_close {
            Some(count) => count.to_string(),
            None => "?".to_owned(),
        };
        format!(
            "after the load: {}, {} connections exist; after close: {server} on the \
             server, {} alive here",
            after.status, after.live_connections, self.live_after_close
        )
    }

    fn recovery_lines(
        &self,
        f: &mut fmt::Formatter<'_>,
        title: &str,
        keep: fn(&str) -> bool,
    ) -> fmt::Result {
        let chosen: Vec<&Recovery> = self.recoveries.iter().filter(|r| keep(r.fault)).collect();
        if chosen.is_empty() {
            return writeln!(f, "  {title}: none");
        }
        writeln!(f, "  {title}: {}", spread(&chosen))?;
        let mut names: Vec<&str> = chosen.iter().map(|r| r.fault).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let one: Vec<&Recovery> = chosen.iter().copied().filter(|r| r.fault == name).collect();
            writeln!(f, "      {name:<10} {}", spread(&one))?;
        }
        Ok(())
    }
}

/// `n, min, median, max` of the recovered times, and how many never recovered.
fn spread(recoveries: &[&Recovery]) -> String {
    let mut times: Vec<Duration> = recoveries.iter().filter_map(|r| r.after).collect();
    times.sort_unstable();
    let never = recoveries.len() - times.len();
    let mut out = format!("{} times", recoveries.len());
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        let median = times[times.len() / 2];
        out.push_str(&format!(
            ", min {}, median {}, max {}",
            human(*min),
            human(median),
            human(*max)
        ));
    }
    if never > 0 {
        out.push_str(&format!(", {never} never recovered"));
    }
    out
}

/// A duration for people: `850µs`, `12.3ms`, `1.25s`.
fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// `ok` or `FAIL`, for the must-be-zero lines.
fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAIL"
    }
}

fn tally_lines(f: &mut fmt::Formatter<'_>, counts: &[ErrorCount]) -> fmt::Result {
    for count in counts {
        writeln!(
            f,
            "      {:>7}  {:<32} e.g. {}",
            count.count, count.kind, count.example
        )?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "chaos {}: seed {} (repeat with --seed {}), {} of load, {} tasks, max_size {}, \
             wait_timeout {}",
            self.backend,
            c.seed,
            c.seed,
            human(self.elapsed),
            c.tasks,
            c.max_size,
            human(c.wait_timeout)
        )?;
        writeln!(f, "  operations done          {}", self.operations)?;
        writeln!(
            f,
            "  gets                     {} ({} returned a connection)",
            self.gets, self.checkouts
        )?;
        let total: u64 = self.errors.iter().map(|e| e.count).sum();
        writeln!(f, "  errors by kind           {total}")?;
        tally_lines(f, &self.errors)?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        let faults = if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(", ")
        };
        write!(
            f,
            "  faults injected          {faults}; {} connections killed",
            self.killed
        )?;
        if let Some(accepted) = self.proxy_accepted {
            write!(f, "; the proxy accepted {accepted} connections")?;
        }
        writeln!(f)?;
        if !self.kill_errors.is_empty() {
            writeln!(f, "  kills that found nothing to kill:")?;
            tally_lines(f, &self.kill_errors)?;
        }
        if !self.server_count_errors.is_empty() {
            writeln!(f, "  server counts that failed:")?;
            tally_lines(f, &self.server_count_errors)?;
        }
        let peak_ok = self.peak_server_connections <= c.max_size
            && self.peak_client_connections <= c.max_size;
        writeln!(
            f,
            "  highest server-side connections    {:>5}  {:<4} (max_size {}; {} samples; \
             {} at once on the client side)",
            self.peak_server_connections,
            verdict(peak_ok),
            c.max_size,
            self.server_samples,
            self.peak_client_connections
        )?;
        tally_lines(f, &self.over_limit_samples)?;
        if !self.over_limit_briefly.is_empty() {
            writeln!(
                f,
                "    above max_size only for a moment (highest {}; gone {:?} later, so not \
                 counted):",
                self.peak_server_seen,
                super::monitor::CONFIRM_AFTER
            )?;
            tally_lines(f, &self.over_limit_briefly)?;
        }
        let leaked = self.leaked_slots();
        writeln!(
            f,
            "  leaked slots                       {:>5}  {:<4} ({})",
            leaked,
            verdict(leaked == 0),
            self.leak_detail()
        )?;
        writeln!(
            f,
            "  dirty connections handed out       {:>5}  {:<4} ({} sessions left dirty on purpose)",
            self.dirty_handed_out,
            verdict(self.dirty_handed_out == 0),
            self.dirtied
        )?;
        let late = self.late_get_count();
        writeln!(
            f,
            "  waits longer than the wait timeout {:>5}  {:<4} (longest wait {}, limit {} + {} \
             margin; longest get {} with its connect or checks)",
            late,
            verdict(late == 0),
            human(self.longest_wait),
            human(c.wait_timeout),
            human(c.scheduling_margin),
            human(self.longest_get)
        )?;
        tally_lines(f, &self.late_gets)?;
        let rows = &self.rows;
        match &self.rows_error {
            Some(e) => writeln!(
                f,
                "  rows acknowledged but missing          ?  FAIL (the table could not be \
                 read: {e})"
            )?,
            None => writeln!(
                f,
                "  rows acknowledged but missing      {:>5}  {:<4} ({} acknowledged, {} in the \
                 table, {} committed without an acknowledgement, {} never written)",
                rows.missing.len(),
                verdict(rows.missing.is_empty() && rows.unknown.is_empty()),
                rows.acknowledged,
                rows.in_table,
                rows.committed_unacknowledged,
                rows.unknown.len()
            )?,
        }
        self.recovery_lines(f, "heal -> first successful checkout", |fault| {
            !is_kill(fault)
        })?;
        self.recovery_lines(f, "kill -> first successful checkout", is_kill)?;
        let failures = self.failures();
        if failures.is_empty() {
            write!(f, "chaos {}: PASSED", self.backend)
        } else {
            writeln!(f, "chaos {}: FAILED", self.backend)?;
            for failure in &failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> Report {
        Report {
            backend: "mock".into(),
            config: ChaosConfig {
                seed: 5,
                ..ChaosConfig::default()
            },
            elapsed: Duration::from_secs(30),
            gets: 120,
            checkouts: 110,
            operations: 100,
            dirtied: 12,
            errors: vec![ErrorCount {
                kind: "get: wait timeout".into(),
                count: 10,
                example: "timed out".into(),
            }],
            faults: vec![("blackhole", 2), ("kill_all", 1)],
            killed: 8,
            kill_errors: Vec::new(),
            proxy_accepted: Some(40),
            proxy_open_after_close: Some(0),
            peak_server_connections: 8,
            server_samples: 500,
            server_count_errors: Vec::new(),
            over_limit_samples: Vec::new(),
            over_limit_briefly: Vec::new(),
            peak_server_seen: 8,
            peak_client_connections: 8,
            after_load: StatusAfterLoad {
                status: Status {
                    max_size: 8,
                    size: 3,
                    idle: 3,
                    ..Status::default()
                },
                live_connections: 3,
            },
            hung_tasks: 0,
            close_error: None,
            server_connections_after_close: Some(0),
            live_after_close: 0,
            dirty_handed_out: 0,
            late_gets: Vec::new(),
            longest_get: Duration::from_millis(2510),
            longest_wait: Duration::from_millis(2010),
            rows_error: None,
            rows: Rows {
                acknowledged: 100,
                in_table: 101,
                committed_unacknowledged: 1,
                missing: Vec::new(),
                unknown: Vec::new(),
            },
            recoveries: vec![
                Recovery {
                    fault: "blackhole",
                    after: Some(Duration::from_millis(30)),
                },
                Recovery {
                    fault: "kill_all",
                    after: Some(Duration::from_millis(2)),
                },
            ],
        }
    }

    #[test]
    fn a_clean_run_passes_and_prints_every_figure() {
        let report = passing();
        assert_eq!(report.failures(), Vec::<String>::new());
        let text = report.to_string();
        for needle in [
            "seed 5 (repeat with --seed 5)",
            "operations done          100",
            "get: wait timeout",
            "blackhole 2, kill_all 1; 8 connections killed; the proxy accepted 40",
            "highest server-side connections        8  ok",
            "leaked slots                           0  ok",
            "dirty connections handed out           0  ok",
            "waits longer than the wait timeout     0  ok   (longest wait 2.01s, limit 2.00s + \
             500.0ms margin; longest get 2.51s",
            "rows acknowledged but missing          0  ok",
            "heal -> first successful checkout: 1 times, min 30.0ms, median 30.0ms, max 30.0ms",
            "kill -> first successful checkout: 1 times, min 2.0ms",
            "chaos mock: PASSED",
        ] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn every_must_be_zero_fails_the_run() {
        let mut report = passing();
        report.peak_server_connections = 9;
        report.after_load.status.in_use = 1;
        report.after_load.status.size = 4;
        report.dirty_handed_out = 2;
        report.late_gets = vec![ErrorCount {
            kind: "returned a connection".into(),
            count: 3,
            example: "a get took 3s".into(),
        }];
        report.rows.missing = vec![7, 9];
        report.rows.unknown = vec![1000];
        report.recoveries[0].after = None;
        report.server_connections_after_close = Some(1);
        let failures = report.failures();
        assert_eq!(failures.len(), 7, "{failures:#?}");
        assert!(failures[0].contains("had 9 connections, more than max_size 8"));
        // 1 in use, size 4 against 3 connections, 1 left on the server.
        assert!(failures[1].starts_with("3 leaked slots"), "{}", failures[1]);
        assert!(failures[2].starts_with("2 dirty connections"));
        assert!(failures[3].starts_with("3 gets waited longer"));
        assert!(failures[4].contains("first: [7, 9]"));
        assert!(failures[5].contains("never wrote"));
        assert!(failures[6].contains("did not recover"));
        assert!(report.to_string().contains("chaos mock: FAILED"));
    }

    #[test]
    fn a_moment_above_max_size_is_shown_but_does_not_fail() {
        let mut report = passing();
        report.peak_server_seen = 9;
        report.over_limit_briefly = vec![ErrorCount {
            kind: "within 1s after blackhole healed".into(),
            count: 1,
            example: "9 connections 12.0s into the run, 8 500ms later".into(),
        }];
        assert_eq!(report.failures(), Vec::<String>::new());
        let text = report.to_string();
        assert!(
            text.contains("above max_size only for a moment (highest 9"),
            "{text}"
        );
        assert!(text.contains("within 1s after blackhole healed"), "{text}");
        report.peak_client_connections = 9;
        assert_eq!(report.failures().len(), 1);
        assert!(report.failures()[0].contains("on the client side"));
    }

    #[test]
    fn an_empty_run_fails() {
        let mut report = passing();
        report.operations = 0;
        report.server_samples = 0;
        assert_eq!(report.failures().len(), 2);
    }

    #[test]
    fn a_table_that_cannot_be_read_fails_the_run_and_says_why() {
        let mut report = passing();
        report.rows = Rows::default();
        report.rows_error = Some("SSCAN: timed out".into());
        assert_eq!(
            report.failures(),
            vec!["the table could not be read back: SSCAN: timed out".to_owned()]
        );
        assert!(report.to_string().contains(
            "rows acknowledged but missing          ?  FAIL (the table could not be read"
        ));
    }

    #[test]
    fn a_proxy_the_pool_bypassed_fails_the_run() {
        let mut report = passing();
        report.proxy_accepted = Some(0);
        let failures = report.failures();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("never connected through the fault proxy"));
    }
}
