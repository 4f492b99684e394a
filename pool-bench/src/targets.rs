//! The targets, set against what this run measured: information for the
//! reader, never a pass/fail of the run (machines differ; the ratios are the result).

use crate::measure::Verdict;
use crate::report::{Report, Table};

/// Whether a target was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Met {
    Yes,
    No,
    /// The run's noise is larger than the distance to the target.
    WithinNoise,
    /// Nothing to judge (a contender missing).
    Unknown,
}

impl From<Option<bool>> for Met {
    fn from(met: Option<bool>) -> Met {
        match met {
            Some(true) => Met::Yes,
            Some(false) => Met::No,
            None => Met::Unknown,
        }
    }
}

impl From<Verdict> for Met {
    fn from(verdict: Verdict) -> Met {
        match verdict {
            Verdict::Met => Met::Yes,
            Verdict::Missed => Met::No,
            Verdict::WithinNoise => Met::WithinNoise,
        }
    }
}

/// One target and what was measured for it.
pub struct Target {
    scenario: String,
    goal: String,
    measured: String,
    met: Met,
}

impl Target {
    pub fn new(
        scenario: impl Into<String>,
        goal: impl Into<String>,
        measured: impl Into<String>,
        met: impl Into<Met>,
    ) -> Target {
        Target {
            scenario: scenario.into(),
            goal: goal.into(),
            measured: measured.into(),
            met: met.into(),
        }
    }
}

/// The targets of every scenario run.
#[derive(Default)]
pub struct Targets(Vec<Target>);

impl Targets {
    pub fn push(&mut self, target: Target) {
        self.0.push(target);
    }

    /// Adds the table of targets to the report.
    pub fn write(&self, report: &mut Report) {
        if self.0.is_empty() {
            return;
        }
        report.heading(2, "Targets");
        report.text(
            "The issue's targets against this run's ratios (ratios are pool-core's value \
             over the other's, or as stated). Where a ratio comes with an interval in \
             brackets (end to end, and one task against qp), it is the median of the \
             rounds' ratios, each between two runs seconds apart, and the interval holds \
             the true median with 95% confidence or more: `within noise` when the \
             interval straddles the target, or when too few rounds ran for that \
             confidence (a quick run), so this run cannot tell.\n\n",
        );
        let mut table = Table::new(&["scenario", "target", "measured", "met"]);
        for target in &self.0 {
            table.row(vec![
                target.scenario.clone(),
                target.goal.clone(),
                target.measured.clone(),
                match target.met {
                    Met::Yes => "yes",
                    Met::No => "**no**",
                    Met::WithinNoise => "within noise",
                    Met::Unknown => "-",
                }
                .to_owned(),
            ]);
        }
        report.table(&table);
    }
}
