//! The targets, set against what this run measured: information for the
//! reader, never a pass/fail of the run (machines differ; the ratios are the result).

use crate::report::{Report, Table};

/// One target and what was measured for it.
pub struct Target {
    scenario: String,
    goal: String,
    measured: String,
    /// `None`: nothing to judge (a contender missing).
    met: Option<bool>,
}

impl Target {
    pub fn new(
        scenario: impl Into<String>,
        goal: impl Into<String>,
        measured: impl Into<String>,
        met: Option<bool>,
    ) -> Target {
        Target {
            scenario: scenario.into(),
            goal: goal.into(),
            measured: measured.into(),
            met,
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
             over the other's, or as stated).\n\n",
        );
        let mut table = Table::new(&["scenario", "target", "measured", "met"]);
        for target in &self.0 {
            table.row(vec![
                target.scenario.clone(),
                target.goal.clone(),
                target.measured.clone(),
                match target.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "**no**".to_owned(),
                    None => "-".to_owned(),
                },
            ]);
        }
        report.table(&table);
    }
}
