//! Line charts as SVG, written by hand (no plotting crate): a figure is a title, a
//! note, one legend shared by all its panels, and a grid of panels, each with axes,
//! ticks, grid lines and one line per contender.
//!
//! With a shared legend a contender keeps its colour in every panel. A point without a
//! value (the contender deadlocked or failed there) breaks its line and is marked with
//! a `×` on the panel's top edge, so a missing value is never mistaken for a low one.
//! A linear y axis always starts at zero, so heights compare honestly; a logarithmic
//! one (for values spanning decades) says so in its label, and equal distances there
//! are equal ratios.

use std::fmt::Write as _;

/// The width of one panel, and of a figure at least.
const PANEL_WIDTH: f64 = 440.0;
const MIN_WIDTH: f64 = 760.0;
const PLOT_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 18.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 50.0;
const PAD: f64 = 16.0;
const LEGEND_ROW: f64 = 20.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";
/// An estimate of the width of one character at 12px, for laying out text.
const CHAR_WIDTH: f64 = 6.8;

/// Okabe-Ito colours, readable with the common colour-vision deficiencies; the first
/// goes to the first series named (ours).
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F3C8D", "#000000",
];

/// How positions along an axis are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Axis {
    /// From zero.
    Linear,
    /// Equal distances for equal ratios, ticks where given (concurrency 1, 16, 256).
    Log2,
    /// Equal distances for equal ratios, ticks at 1, 2 and 5 times powers of ten: for
    /// values whose ratios matter and which span more than a decade.
    Log10,
}

/// One contender's line.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// `(x, y)`; `y = None` where there is no value.
    pub points: Vec<(f64, Option<f64>)>,
    /// Drawn thicker (ours).
    pub bold: bool,
    /// Drawn dashed (a floor or a baseline, not a pool).
    pub dashed: bool,
}

/// One chart of the figure.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: Axis,
    /// The x ticks; `None`: chosen from the data.
    pub x_ticks: Option<Vec<f64>>,
    pub y_axis: Axis,
    pub series: Vec<Series>,
    /// A horizontal reference line and its label.
    pub reference: Option<(f64, String)>,
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Legend {
    /// One for the figure: a name has one colour in every panel.
    Shared,
    /// One per panel, when the panels show different contenders.
    PerPanel,
}

/// A figure: panels in a grid, with their legend.
#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    /// Printed under the title, wrapped.
    pub note: String,
    pub columns: usize,
    pub legend: Legend,
    pub panels: Vec<Panel>,
}

/// A legend entry: name, colour, bold, dashed.
type Entry = (String, &'static str, bool, bool);

impl Figure {
    /// The figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let columns = self.columns.clamp(1, self.panels.len().max(1));
        let rows = self.panels.len().div_ceil(columns).max(1);
        let width = (PAD * 2.0 + columns as f64 * PANEL_WIDTH).max(MIN_WIDTH);
        let panel_width = (width - 2.0 * PAD) / columns as f64;
        let chars = ((width - 2.0 * PAD) / CHAR_WIDTH) as usize;

        let mut body = String::new();
        let mut y = PAD;
        for line in wrap(&self.title, chars * 12 / 18) {
            y += 22.0;
            let _ = writeln!(
                body,
                r#"<text x="{PAD}" y="{y}" font-size="18" font-weight="bold" {FONT}>{}</text>"#,
                escape(&line)
            );
        }
        for line in wrap(&self.note, chars) {
            y += 17.0;
            let _ = writeln!(
                body,
                r##"<text x="{PAD}" y="{y}" font-size="12" fill="#444" {FONT}>{}</text>"##,
                escape(&line)
            );
        }
        y += 14.0;

        let shared = self.shared_entries();
        let panel_entries: Vec<Vec<Entry>> = self
            .panels
            .iter()
            .map(|panel| match self.legend {
                Legend::Shared => shared.clone(),
                Legend::PerPanel => entries(panel.series.iter()),
            })
            .collect();
        let panel_legend = match self.legend {
            Legend::Shared => {
                y += draw_legend(&shared, PAD, width - 2.0 * PAD, y, &mut body) + 8.0;
                0.0
            }
            Legend::PerPanel => panel_entries
                .iter()
                .map(|e| legend_height(e, panel_width - MARGIN_LEFT - MARGIN_RIGHT))
                .fold(0.0, f64::max),
        };
        let panel_height = PLOT_HEIGHT + panel_legend;
        for (index, panel) in self.panels.iter().enumerate() {
            let x0 = PAD + (index % columns) as f64 * panel_width;
            let y0 = y + (index / columns) as f64 * panel_height;
            let legend = &panel_entries[index];
            if self.legend == Legend::PerPanel {
                draw_legend(
                    legend,
                    x0 + MARGIN_LEFT,
                    panel_width - MARGIN_LEFT - MARGIN_RIGHT,
                    y0 + MARGIN_TOP - 4.0,
                    &mut body,
                );
            }
            let area = Area {
                left: x0 + MARGIN_LEFT,
                right: x0 + panel_width - MARGIN_RIGHT,
                top: y0 + MARGIN_TOP + panel_legend,
                bottom: y0 + panel_height - MARGIN_BOTTOM,
                title_y: y0 + 18.0,
                label_x: x0 + 16.0,
            };
            panel.draw(&area, legend, &mut body);
        }
        let height = y + rows as f64 * panel_height + PAD;

        let mut svg = String::new();
        let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">"#
        );
        let _ = writeln!(svg, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#
        );
        svg.push_str(&body);
        svg.push_str("</svg>\n");
        svg
    }

    /// Every series name of every panel, in the order first seen.
    fn shared_entries(&self) -> Vec<Entry> {
        entries(self.panels.iter().flat_map(|p| &p.series))
    }
}

/// Legend entries for these series: one per name, coloured in the order first seen.
fn entries<'a>(series: impl Iterator<Item = &'a Series>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for series in series {
        if !entries.iter().any(|e| e.0 == series.name) {
            let colour = PALETTE[entries.len() % PALETTE.len()];
            entries.push((series.name.clone(), colour, series.bold, series.dashed));
        }
    }
    entries
}

fn legend_item_width(name: &str) -> f64 {
    28.0 + name.chars().count() as f64 * CHAR_WIDTH + 22.0
}

fn legend_height(entries: &[Entry], width: f64) -> f64 {
    let mut x = 0.0;
    let mut rows = 1.0;
    for entry in entries {
        let item = legend_item_width(&entry.0);
        if x + item > width && x > 0.0 {
            x = 0.0;
            rows += 1.0;
        }
        x += item;
    }
    rows * LEGEND_ROW
}

/// Draws a legend from `(left, top)`, wrapping at `width`; returns its height.
fn draw_legend(entries: &[Entry], left: f64, width: f64, top: f64, out: &mut String) -> f64 {
    let mut x = left;
    let mut row_y = top + LEGEND_ROW / 2.0;
    for (name, colour, bold, dashed) in entries {
        let item = legend_item_width(name);
        if x + item > left + width && x > left {
            x = left;
            row_y += LEGEND_ROW;
        }
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{row_y:.1}" x2="{:.1}" y2="{row_y:.1}" {}/>"#,
            x + 22.0,
            stroke(colour, *bold, *dashed)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" {FONT}>{}</text>"#,
            x + 28.0,
            row_y + 4.0,
            escape(name)
        );
        x += item;
    }
    row_y - top + LEGEND_ROW / 2.0
}

/// Where a panel draws: its plot area, and where its title and y label go.
struct Area {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    title_y: f64,
    label_x: f64,
}

/// The mapping from values to positions along one axis.
struct Scale {
    axis: Axis,
    /// The ends, in axis units (a logarithm on log axes).
    low: f64,
    high: f64,
}

impl Scale {
    fn to_axis(&self, value: f64) -> f64 {
        match self.axis {
            Axis::Linear => value,
            Axis::Log2 => value.log2(),
            Axis::Log10 => value.log10(),
        }
    }

    /// 0 at `low`, 1 at `high`.
    fn fraction(&self, value: f64) -> f64 {
        (self.to_axis(value) - self.low) / (self.high - self.low)
    }

    fn usable(&self, value: f64) -> bool {
        value.is_finite() && (self.axis == Axis::Linear || value > 0.0)
    }
}

/// 1, 2 and 5 times powers of ten from `low` to `high` (both > 0).
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut power = 10f64.powf(low.log10().floor());
    while power <= high * 1.000_001 {
        for m in [1.0, 2.0, 5.0] {
            let tick = power * m;
            if tick >= low * 0.999_999 && tick <= high * 1.000_001 {
                ticks.push(tick);
            }
        }
        power *= 10.0;
    }
    ticks
}

/// The largest 1-2-5 value at most `value`, and the smallest at least it.
fn log_bounds(value: f64) -> (f64, f64) {
    let power = 10f64.powf(value.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0];
    let below = steps
        .iter()
        .rev()
        .map(|m| m * power)
        .find(|v| *v <= value * 1.000_001)
        .unwrap_or(power);
    let above = steps
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= value * 0.999_999)
        .unwrap_or(10.0 * power);
    (below, above)
}

impl Panel {
    fn x_scale(&self) -> (Scale, Vec<f64>) {
        let usable = |x: &f64| x.is_finite() && (self.x_axis == Axis::Linear || *x > 0.0);
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.x_ticks.iter().flatten().copied())
            .filter(usable)
            .collect();
        let mut scale = Scale {
            axis: self.x_axis,
            low: 0.0,
            high: 1.0,
        };
        let (low, high) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        if low.is_finite() {
            let low = if self.x_axis == Axis::Linear {
                low.min(0.0)
            } else {
                low
            };
            (scale.low, scale.high) = (scale.to_axis(low), scale.to_axis(high));
        }
        if scale.high - scale.low < 1e-9 {
            scale.low -= 0.5;
            scale.high += 0.5;
        }
        let ticks = match &self.x_ticks {
            Some(ticks) => ticks.clone(),
            None if self.x_axis == Axis::Linear => linear_ticks(scale.low, scale.high),
            None => log_ticks(2f64.powf(scale.low), 2f64.powf(scale.high)),
        };
        // A little room at both ends, so the end points do not sit on the axes.
        let pad = (scale.high - scale.low) * 0.04;
        if self.x_axis != Axis::Linear {
            scale.low -= pad;
        }
        scale.high += pad;
        (scale, ticks)
    }

    fn y_scale(&self) -> (Scale, Vec<f64>, f64) {
        let mut ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .chain(self.reference.as_ref().map(|r| r.0))
            .collect();
        let axis = self.y_axis;
        ys.retain(|y| y.is_finite() && (axis == Axis::Linear || *y > 0.0));
        let max = ys.iter().copied().fold(0.0_f64, f64::max);
        if axis == Axis::Linear || ys.is_empty() {
            let step = nice_step(if max > 0.0 { max / 5.0 } else { 0.2 });
            let high = ((max / step).ceil() * step).max(step);
            let ticks = (0..)
                .map(|i| f64::from(i) * step)
                .take_while(|t| *t <= high + step * 1e-6)
                .collect();
            let scale = Scale {
                axis: Axis::Linear,
                low: 0.0,
                high,
            };
            (scale, ticks, step)
        } else {
            let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let (low, _) = log_bounds(min);
            let (_, high) = log_bounds(max);
            let high = if high <= low { low * 10.0 } else { high };
            let scale = Scale {
                axis,
                low: low.log10(),
                high: high.log10(),
            };
            (scale, log_ticks(low, high), 1.0)
        }
    }

    fn draw(&self, area: &Area, legend: &[Entry], out: &mut String) {
        let Area {
            left,
            right,
            top,
            bottom,
            ..
        } = *area;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle" {FONT}>{}</text>"#,
            (left + right) / 2.0,
            area.title_y,
            escape(&self.title)
        );

        let (x_scale, x_ticks) = self.x_scale();
        let (y_scale, y_ticks, y_step) = self.y_scale();
        let px = |x: f64| left + x_scale.fraction(x) * (right - left);
        let py = |y: f64| bottom - y_scale.fraction(y) * (bottom - top);

        // Grid lines and y ticks.
        for &tick in &y_ticks {
            let y = py(tick);
            let _ = writeln!(
                out,
                r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#e3e3e3" stroke-width="1"/>"##
            );
            let step = if y_scale.axis == Axis::Linear {
                y_step
            } else {
                tick
            };
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333" {FONT}>{}</text>"##,
                left - 6.0,
                y + 4.0,
                format_tick(tick, step)
            );
        }

        // x ticks.
        let x_step = match self.x_axis {
            Axis::Linear => nice_step((x_scale.high - x_scale.low) / 6.0),
            Axis::Log2 | Axis::Log10 => 1.0,
        };
        for &tick in x_ticks.iter().filter(|t| x_scale.usable(**t)) {
            let x = px(tick);
            if !(left - 0.5..=right + 0.5).contains(&x) {
                continue;
            }
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333" stroke-width="1"/>"##,
                bottom + 5.0
            );
            let _ = writeln!(
                out,
                r##"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333" {FONT}>{}</text>"##,
                bottom + 18.0,
                format_tick(tick, x_step)
            );
        }

        // Axes and their labels.
        let _ = writeln!(
            out,
            r##"<polyline points="{left:.1},{top:.1} {left:.1},{bottom:.1} {right:.1},{bottom:.1}" fill="none" stroke="#333" stroke-width="1"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" {FONT}>{}</text>"#,
            (left + right) / 2.0,
            bottom + 38.0,
            escape(&self.x_label)
        );
        let y_label = if y_scale.axis == Axis::Linear {
            self.y_label.clone()
        } else {
            format!("{} (log scale)", self.y_label)
        };
        let (label_x, label_y) = (area.label_x, (top + bottom) / 2.0);
        let _ = writeln!(
            out,
            r#"<text x="{label_x:.1}" y="{label_y:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {label_x:.1} {label_y:.1})" {FONT}>{}</text>"#,
            escape(&y_label)
        );

        if let Some((value, label)) = &self.reference {
            let y = py(*value);
            let _ = writeln!(
                out,
                r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#888" stroke-width="1" stroke-dasharray="2 3"/>"##
            );
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#666" {FONT}>{}</text>"##,
                right - 2.0,
                y - 4.0,
                escape(label)
            );
        }

        // The lines: a break wherever a value is missing, and a `×` on the top edge.
        for series in &self.series {
            let colour = legend
                .iter()
                .find(|e| e.0 == series.name)
                .map_or(PALETTE[0], |e| e.1);
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &series.points {
                match y {
                    Some(y) if y_scale.usable(y) => segments
                        .last_mut()
                        .expect("one at least")
                        .push((px(x), py(y))),
                    _ => {
                        segments.push(Vec::new());
                        let _ = writeln!(
                            out,
                            r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="{colour}" {FONT}>×</text>"#,
                            px(x),
                            top + 4.0
                        );
                    }
                }
            }
            for segment in segments.iter().filter(|s| !s.is_empty()) {
                let points: Vec<String> = segment
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = writeln!(
                    out,
                    r#"<polyline points="{}" fill="none" {}/>"#,
                    points.join(" "),
                    stroke(colour, series.bold, series.dashed)
                );
                if series.points.len() <= 24 {
                    for (x, y) in segment {
                        let _ = writeln!(
                            out,
                            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{}" fill="{colour}"/>"#,
                            if series.bold { 3.5 } else { 2.5 }
                        );
                    }
                }
            }
        }
    }
}

fn stroke(colour: &str, bold: bool, dashed: bool) -> String {
    let width = if bold { 3.0 } else { 1.8 };
    let dash = if dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    format!(r#"stroke="{colour}" stroke-width="{width}"{dash} stroke-linejoin="round""#)
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let fraction = raw / power;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|n| fraction <= *n + 1e-9)
        .unwrap_or(10.0);
    nice * power
}

fn linear_ticks(min: f64, max: f64) -> Vec<f64> {
    let step = nice_step((max - min) / 6.0);
    let mut tick = (min / step).ceil() * step;
    let mut ticks = Vec::new();
    while tick <= max + step * 1e-6 {
        ticks.push(tick);
        tick += step;
    }
    ticks
}

/// A tick label: as many decimals as the step needs (2.5 needs one, 0.25 two), whole
/// thousands and millions as `k` and `M`.
fn format_tick(value: f64, step: f64) -> String {
    let decimals = (0..=4)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(4) as usize;
    if decimals > 0 {
        format!("{value:.decimals$}")
    } else if value.abs() >= 1e6 && (value / 1e5).fract().abs() < 1e-9 {
        format!("{}M", value / 1e6)
    } else if value.abs() >= 10_000.0 && (value / 1000.0).fract().abs() < 1e-9 {
        format!("{:.0}k", value / 1000.0)
    } else {
        format!("{value:.0}")
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
