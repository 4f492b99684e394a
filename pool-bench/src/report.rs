//! The report: markdown text printed to stdout as it grows and written to
//! `report.md`, the charts written beside it, and the problems that make the run fail.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::contenders;
use crate::measure::{Measurement, Problem};

/// A markdown table whose columns are padded, so it reads as well on a terminal.
pub struct Table {
    headers: Vec<String>,
    /// Right-aligned columns (numbers).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns; a header starting with `>` is right-aligned (the
    /// `>` is dropped).
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| h.as_ref().trim_start_matches('>').to_owned())
                .collect(),
            right: headers
                .iter()
                .map(|h| h.as_ref().starts_with('>'))
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "a row has every column");
        self.rows.push(cells);
    }

    pub fn to_markdown(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .chain([&self.headers[c]])
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(3)
                    .max(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (c, width) in widths.iter().enumerate() {
                let cell = cells.get(c).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if self.right[c] {
                    let _ = write!(out, " {}{cell} |", " ".repeat(pad));
                } else {
                    let _ = write!(out, " {cell}{} |", " ".repeat(pad));
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        out.push('|');
        for (c, width) in widths.iter().enumerate() {
            if self.right[c] {
                let _ = write!(out, "{}:|", "-".repeat(width + 1));
            } else {
                let _ = write!(out, "{}|", "-".repeat(width + 2));
            }
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// The whole report of one run.
pub struct Report {
    dir: PathBuf,
    text: String,
    charts: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Report {
    /// A report to be written into `dir`.
    pub fn new(dir: PathBuf) -> Report {
        Report {
            dir,
            text: String::new(),
            charts: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds markdown text (a paragraph, a heading) and prints it.
    pub fn text(&mut self, markdown: &str) {
        print!("{markdown}");
        if !markdown.ends_with("\n\n") {
            println!();
        }
        self.text.push_str(markdown);
        if !markdown.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    pub fn heading(&mut self, level: usize, title: &str) {
        self.text(&format!("{} {title}\n\n", "#".repeat(level)));
    }

    pub fn table(&mut self, table: &Table) {
        self.text(&format!("{}\n", table.to_markdown()));
    }

    /// Adds a chart: written as `name` beside the report, linked from the text.
    pub fn chart(&mut self, name: &str, alt: &str, svg: String) {
        self.text(&format!("![{alt}]({name})\n\n"));
        self.charts.push((name.to_owned(), svg));
    }

    /// Something that makes this run fail (after the report is written).
    pub fn problem(&mut self, problem: String) {
        eprintln!("pool-bench: problem: {problem}");
        self.problems.push(problem);
    }

    /// Records a measurement's problem as one of this run's, unless it is a result:
    /// a contender known to deadlock timing out, or a configuration not run.
    pub fn check(&mut self, scenario: &str, name: &str, measurement: &Measurement) {
        match &measurement.problem {
            None | Some(Problem::NotRun(_)) => {}
            Some(Problem::TimedOut { .. }) if contenders::KNOWN_TO_DEADLOCK.contains(&name) => {}
            Some(problem) => self.problem(format!("{scenario}: {name}: {}", problem.cell())),
        }
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Writes `report.md` and the charts; returns the report's path.
    pub fn write(&self) -> Result<PathBuf, String> {
        let write = |path: &Path, contents: &str| {
            std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        for (name, svg) in &self.charts {
            write(&self.dir.join(name), svg)?;
        }
        let path = self.dir.join("report.md");
        write(&path, &self.text)?;
        Ok(path)
    }
}

/// Nanoseconds for a table: no decimals from 100 up.
pub fn ns(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A ratio, as `0.52×`.
pub fn ratio(value: f64) -> String {
    format!("{value:.2}×")
}

/// A spread (a range over the median), as `±4%` (half the range).
pub fn spread(value: Option<f64>) -> String {
    value.map_or_else(String::new, |s| format!("±{:.0}%", s * 50.0))
}

/// A count with thousands as `k`.
pub fn count(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}
