//! A grid's figure per numeric axis: the test error (mean with its standard deviation over
//! rounds) against the axis's values, one line per combination of the other axes' values,
//! on a log axis when the values span a factor of 10 or more. An axis that several grids
//! share also gets one figure with every grid's lines (which technique saves most data).

use plotters::prelude::*;

use super::Summary;
use super::figures::{SERIES, series_legend};

/// One line: the points of a grid that share every other axis's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The other axes' values (`aux_loss=0.3`), or the stem when there are none.
    pub label: String,
    /// `(axis value, mean %, std %)`, by axis value.
    pub points: Vec<(f64, f64, f64)>,
}

/// The figure of one numeric axis of one grid, or of every grid that has it.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisFigure {
    /// The grid's stem; empty for the figure of every grid.
    pub stem: String,
    /// The axis's short name, as the grid's table heads it.
    pub axis: String,
    pub lines: Vec<Line>,
    /// Values spanning a factor of 10 or more, all positive: a log axis.
    pub log: bool,
}

impl AxisFigure {
    /// The figure's file name (never a variant's: those have no spaces to make `_`).
    pub fn file_name(&self) -> String {
        if self.stem.is_empty() {
            return super::figures::file_name(&format!("grids {}", self.axis));
        }
        super::figures::file_name(&format!("grid {} {}", self.stem, self.axis))
    }

    /// The figure's title.
    pub fn title(&self) -> String {
        if self.stem.is_empty() {
            format!("test error against {}", self.axis)
        } else {
            format!("{}: test error against {}", self.stem, self.axis)
        }
    }
}

/// For each numeric axis (by key path) of two grids or more, one figure with every grid's
/// lines, each labelled by its grid (and its other axes' values).
pub fn shared_axis_figures(summaries: &[Summary]) -> Vec<AxisFigure> {
    let mut keys: Vec<&str> = Vec::new();
    for m in summaries {
        for (_, key, _) in m.grid.iter().flat_map(|g| &g.axes) {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let mut shared: Option<AxisFigure> = None;
        let mut grids = 0;
        for stem in super::grid_stems(summaries) {
            let points = points_of(summaries, stem);
            let g = points[0].grid.as_ref();
            let Some(a) = g.and_then(|g| g.axes.iter().position(|x| x.1 == key)) else {
                continue;
            };
            let Some(mut f) = axis_figure(stem, &points, a) else {
                continue;
            };
            grids += 1;
            for l in &mut f.lines {
                if l.label != stem {
                    l.label = format!("{stem} ({})", l.label);
                }
            }
            match &mut shared {
                None => {
                    shared = Some(AxisFigure {
                        stem: String::new(),
                        ..f
                    })
                }
                Some(s) => {
                    s.lines.extend(f.lines);
                    s.log = s.log && f.log;
                }
            }
        }
        out.extend(shared.filter(|_| grids >= 2));
    }
    out
}

/// The points of the grid `stem`, in report order.
fn points_of<'a>(summaries: &'a [Summary], stem: &str) -> Vec<&'a Summary> {
    summaries
        .iter()
        .filter(|m| m.grid.as_ref().is_some_and(|g| g.stem == stem))
        .collect()
}

/// A figure for every axis of every grid in `summaries` whose values are all numbers (at
/// least two of them), from the points with a mean test error.
pub fn axis_figures(summaries: &[Summary]) -> Vec<AxisFigure> {
    let mut out = Vec::new();
    for stem in super::grid_stems(summaries) {
        let points = points_of(summaries, stem);
        let axes = points[0].grid.as_ref().map_or(0, |g| g.axes.len());
        out.extend((0..axes).filter_map(|a| axis_figure(stem, &points, a)));
    }
    out
}

/// The figure of axis `a` of the grid `stem`, if its values are numbers.
fn axis_figure(stem: &str, points: &[&Summary], a: usize) -> Option<AxisFigure> {
    let mut lines: Vec<Line> = Vec::new();
    let mut xs: Vec<f64> = Vec::new();
    for m in points {
        let g = m.grid.as_ref()?;
        let x: f64 = g
            .axes
            .get(a)?
            .2
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())?;
        xs.push(x);
        let others: Vec<String> = (g.axes.iter().enumerate())
            .filter(|(i, _)| *i != a)
            .map(|(_, (short, _, value))| format!("{short}={value}"))
            .collect();
        let label = if others.is_empty() {
            stem.to_string()
        } else {
            others.join(",")
        };
        let Some(mean) = m.mean else { continue };
        let point = (x, 100.0 * mean, 100.0 * m.std.unwrap_or(0.0));
        match lines.iter_mut().find(|l| l.label == label) {
            Some(l) => l.points.push(point),
            None => lines.push(Line {
                label,
                points: vec![point],
            }),
        }
    }
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    if hi <= lo || lines.is_empty() {
        return None;
    }
    for l in &mut lines {
        l.points.sort_by(|p, q| p.0.total_cmp(&q.0));
    }
    let axis = points[0].grid.as_ref()?.axes[a].0.clone();
    Some(AxisFigure {
        stem: stem.to_string(),
        axis,
        lines,
        log: lo > 0.0 && hi / lo >= 10.0,
    })
}

/// The figure as SVG.
pub fn axis_svg(f: &AxisFigure) -> String {
    super::figures::svg((760, 420), |root| draw(root, f))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    f: &AxisFigure,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    // A log axis is drawn as log10 of the values, labelled with the values themselves.
    let at = |x: f64| if f.log { x.log10() } else { x };
    let all = f.lines.iter().flat_map(|l| l.points.iter());
    let (lo, hi) = all
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
            (l.min(at(p.0)), h.max(at(p.0)))
        });
    let pad = (hi - lo) * 0.05;
    let top = all.map(|p| p.1 + p.2).fold(0.0, f64::max) * 1.1 + 0.1;
    let x_label = if f.log {
        format!("{} (log scale)", f.axis)
    } else {
        f.axis.clone()
    };
    let mut chart = ChartBuilder::on(root)
        .caption(f.title(), ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..top)?;
    let shown = |v: &f64| {
        let x = if f.log { 10f64.powf(*v) } else { *v };
        format!("{}", (x * 1e4).round() / 1e4)
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc("test error (%), mean and std over rounds")
        .x_label_formatter(&shown)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13));
    if f.log {
        // Round values of log10 are not the axis's values: label those instead, below.
        mesh.x_labels(0);
    }
    mesh.draw()?;
    if f.log {
        let mut values: Vec<f64> = f
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        for v in values {
            let (x, y) = chart.backend_coord(&(at(v), 0.0));
            let style = TextStyle::from(("sans-serif", 13).into_font()).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ),
            );
            root.draw(&PathElement::new(vec![(x, y), (x, y + 5)], BLACK))?;
            root.draw(&Text::new(shown(&at(v)), (x, y + 7), style))?;
        }
    }
    for (i, l) in f.lines.iter().enumerate() {
        let color = SERIES[i % SERIES.len()];
        let mean: Vec<(f64, f64)> = l.points.iter().map(|p| (at(p.0), p.1)).collect();
        chart
            .draw_series(LineSeries::new(mean.clone(), color.stroke_width(2)))?
            .label(l.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart.draw_series(mean.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(l.points.iter().map(|p| {
            let x = at(p.0);
            PathElement::new(
                vec![(x, (p.1 - p.2).max(0.0)), (x, p.1 + p.2)],
                color.stroke_width(1),
            )
        }))?;
    }
    series_legend(&mut chart)
}
