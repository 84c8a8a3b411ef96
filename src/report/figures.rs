//! The sweep's figures, as SVG: what each figure shows is built by plain functions ([`rows`],
//! [`curves`]) that tests can read, then drawn with plotters. Output is deterministic: integer
//! pixel coordinates, fixed formatting, no timestamps, no fonts loaded (the viewer renders
//! the text), so the same sweep gives the same bytes.

use plotters::prelude::*;

use crate::record::RoundRecord;

/// The summary figure's file name.
pub const SUMMARY: &str = "summary.svg";

const WIDTH: u32 = 760;
/// Colours of the sets of dots a row can hold, and of the curves.
const PALETTE: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(120, 120, 120),
];
const INK: RGBColor = RGBColor(30, 30, 30);
/// The validation error's colour.
const GREEN: RGBColor = RGBColor(44, 160, 44);
const FONT: &str = "sans-serif";

/// One set of rounds in a row: every round's test error, and their mean and sample std,
/// all in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct DotSet {
    pub errors: Vec<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
}

/// One row of a dot figure: a variant, its sets (one, or old and new in a comparison) and a
/// published reference mean, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub sets: Vec<DotSet>,
    pub reference: Option<f64>,
}

/// The rounds of `records` with a test error, as a [`DotSet`] in percent.
pub fn dot_set(records: &[&RoundRecord]) -> DotSet {
    let errors: Vec<f64> = records
        .iter()
        .filter_map(|r| r.result.test_error)
        .map(|e| 100.0 * e)
        .collect();
    let (mean, std) = super::mean_std(&errors);
    DotSet { errors, mean, std }
}

/// The rows of the summary figure: one per variant, in report order.
pub fn rows(variants: &[(String, Option<f64>)], records: &[RoundRecord]) -> Vec<Row> {
    variants
        .iter()
        .map(|(name, reference)| {
            let rounds: Vec<&RoundRecord> = records.iter().filter(|r| &r.variant == name).collect();
            Row {
                label: name.clone(),
                sets: vec![dot_set(&rounds)],
                reference: reference.map(|r| 100.0 * r),
            }
        })
        .collect()
}

/// Mean and spread of one metric over rounds, at each epoch (1-based) that measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub epoch: Vec<usize>,
    pub mean: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

impl Band {
    /// The band with every value above `top` drawn at `top`.
    fn clipped(&self, top: f64) -> Band {
        let cut = |v: &[f64]| v.iter().map(|x| x.min(top)).collect();
        Band {
            epoch: self.epoch.clone(),
            mean: cut(&self.mean),
            min: cut(&self.min),
            max: cut(&self.max),
        }
    }
}

/// A variant's learning curves: epochs `1..=epochs`, each band over the rounds that reached
/// (and measured) that epoch. Errors in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    pub variant: String,
    pub rounds: usize,
    pub train_loss: Band,
    pub train_error: Band,
    pub test_error: Band,
    /// When the rounds hold validation pairs out.
    pub validation_error: Option<Band>,
}

/// The curves of `variant`'s rounds, or `None` when none has a curve.
pub fn curves(variant: &str, records: &[&RoundRecord]) -> Option<Curves> {
    let with: Vec<&&RoundRecord> = records
        .iter()
        .filter(|r| !r.result.curve.is_empty())
        .collect();
    let epochs = with.iter().map(|r| r.result.curve.len()).max()?;
    let band = |get: &dyn Fn(&crate::record::EpochPoint) -> Option<f64>| {
        let mut b = Band {
            epoch: Vec::new(),
            mean: Vec::new(),
            min: Vec::new(),
            max: Vec::new(),
        };
        for e in 0..epochs {
            let v: Vec<f64> = with
                .iter()
                .filter_map(|r| r.result.curve.get(e).and_then(get))
                .collect();
            // An epoch no round measured (`curve_every`) is left out.
            if v.is_empty() {
                continue;
            }
            b.epoch.push(e + 1);
            b.mean.push(v.iter().sum::<f64>() / v.len() as f64);
            b.min.push(v.iter().copied().fold(f64::INFINITY, f64::min));
            b.max
                .push(v.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        }
        (!b.epoch.is_empty()).then_some(b)
    };
    Some(Curves {
        variant: variant.to_string(),
        rounds: with.len(),
        train_loss: band(&|p| Some(p.train_loss))?,
        train_error: band(&|p| Some(100.0 * p.train_error))?,
        test_error: band(&|p| p.test_error.map(|t| 100.0 * t))?,
        validation_error: band(&|p| p.validation_error.map(|v| 100.0 * v)),
    })
}

/// A variant's figure file: its name where that is a plain file name (ASCII letters, digits
/// and `.-_=`, not starting with `.`, at most 100 characters, not the summary's), else the
/// name with anything else made `_`, shortened, and a hash of the whole name appended, so
/// two variants never share a file and every name makes a valid one.
pub fn file_name(variant: &str) -> String {
    const MOST: usize = 100;
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-=".contains(c);
    let summary = SUMMARY.trim_end_matches(".svg");
    if variant.chars().all(plain)
        && !variant.is_empty()
        && !variant.starts_with('.')
        && variant.len() <= MOST
        && variant != summary
    {
        return format!("{variant}.svg");
    }
    let safe: String = variant
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .take(MOST - 17)
        .collect();
    let safe = safe.trim_start_matches('.').trim_matches('_');
    let hash = &crate::hash::short_of(variant.as_bytes())[..8];
    format!(
        "{}-{hash}.svg",
        if safe.is_empty() { "variant" } else { safe }
    )
}

/// An upper axis bound: `max` rounded up to a round number, with room to spare.
fn headroom(max: f64) -> f64 {
    let m = if max.is_finite() && max > 0.0 {
        max * 1.08
    } else {
        1.0
    };
    let step = 10f64.powf(m.log10().floor()) / 2.0;
    (m / step).ceil() * step
}

/// An SVG of `size` pixels drawn by `draw`. A drawing step that fails leaves what was drawn
/// before it: a figure is never worth failing a report for.
pub fn svg(
    size: (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<std::io::Error>>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let _ = draw(&root);
        let _ = root.present();
    }
    svg
}

/// Colours of a chart's series, in order.
pub const SERIES: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(120, 120, 120),
];

/// The legend of a chart's labelled series, in its upper right corner.
pub fn series_legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(RGBColor(200, 200, 200))
        .label_font((FONT, 13))
        .draw()
}

/// How a legend item is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Dot,
    Line,
    Cross,
}

/// Draws a legend strip: a mark of each colour and its text, left to right.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    items: &[(RGBColor, &str, Mark)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut x = 12;
    for &(color, text, mark) in items {
        match mark {
            Mark::Line => area.draw(&PathElement::new(
                vec![(x, 14), (x + 18, 14)],
                color.stroke_width(3),
            ))?,
            Mark::Dot => area.draw(&Circle::new((x + 9, 14), 5, color.filled()))?,
            Mark::Cross => area.draw(&Cross::new((x + 9, 14), 6, color.stroke_width(2)))?,
        }
        area.draw(&Text::new(
            text.to_string(),
            (x + 24, 7),
            (FONT, 14).into_font().color(&INK),
        ))?;
        x += 34 + 8 * text.len() as i32;
    }
    Ok(())
}

/// A dot figure: a row per variant, every round a dot, the mean a tick with a `±std` bar, the
/// reference a cross. `titles` names the sets (for the legend).
pub fn dots_svg(rows: &[Row], titles: &[&str], x_label: &str) -> String {
    let height = 90 + 34 * rows.len().max(1) as u32;
    let label_width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 48) as u32
        * 8
        + 16;
    let max = rows
        .iter()
        .flat_map(|r| {
            r.sets
                .iter()
                .flat_map(|s| s.errors.iter().copied())
                .chain(r.reference)
        })
        .fold(0.0, f64::max);
    svg((WIDTH.max(label_width + 360), height), |root| {
        draw_dots(root, rows, titles, x_label, label_width, headroom(max))
    })
}

fn draw_dots<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    titles: &[&str],
    x_label: &str,
    label_width: u32,
    x_max: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (top, chart_area) = root.split_vertically(28);
    let mut items: Vec<(RGBColor, &str, Mark)> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| (PALETTE[i % PALETTE.len()], *t, Mark::Dot))
        .collect();
    items.push((INK, "mean ± std", Mark::Line));
    if rows.iter().any(|r| r.reference.is_some()) {
        items.push((PALETTE[1], "published mean", Mark::Cross));
    }
    legend(&top, &items)?;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0.0..x_max, -0.5..(n as f64 - 0.5))?;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| {
            // Row 0 at the top.
            let i = (n as f64 - 1.0 - y).round();
            if (y - y.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc(x_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    for (i, row) in rows.iter().enumerate() {
        let y0 = n as f64 - 1.0 - i as f64;
        let sets = row.sets.len().max(1) as f64;
        for (k, set) in row.sets.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // Sets side by side within the row, rounds spread a little so dots do not hide
            // each other (deterministically, by round index).
            let y = y0 + 0.22 * ((sets - 1.0) / 2.0 - k as f64);
            chart.draw_series(set.errors.iter().enumerate().map(|(j, &e)| {
                let jitter = ((j % 5) as f64 - 2.0) * 0.035;
                Circle::new((e, y + jitter), 4, color.mix(0.55).filled())
            }))?;
            if let Some(m) = set.mean {
                let s = set.std.unwrap_or(0.0);
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(m - s, y), (m + s, y)],
                    INK.stroke_width(2),
                )))?;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(m, y - 0.18), (m, y + 0.18)],
                    INK.stroke_width(3),
                )))?;
            }
        }
        if let Some(r) = row.reference {
            chart.draw_series(std::iter::once(Cross::new(
                (r, y0),
                6,
                PALETTE[1].stroke_width(2),
            )))?;
        }
    }
    Ok(())
}

/// A variant's learning curves: training loss on the left, training and test error on the
/// right, each the mean over rounds with its min-max band.
pub fn curves_svg(c: &Curves) -> String {
    svg((WIDTH + 200, 380), |root| draw_curves(root, c))
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    c: &Curves,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(28);
    let mut items = vec![
        (INK, "training loss", Mark::Line),
        (PALETTE[0], "training error", Mark::Line),
        (PALETTE[1], "test error", Mark::Line),
    ];
    if c.validation_error.is_some() {
        items.push((GREEN, "validation error", Mark::Line));
    }
    items.push((PALETTE[2], "band: min to max over rounds", Mark::Dot));
    legend(&top, &items)?;
    let (left, right) = rest.split_horizontally(rest.dim_in_pixel().0 / 2);
    let epochs = c.train_loss.mean.len() as f64;
    let title = format!("{} ({} rounds)", c.variant, c.rounds);
    let loss_max = headroom(c.train_loss.max.iter().copied().fold(0.0, f64::max));
    let panel = |area, bands: &[(&Band, RGBColor)], y_desc, y_max| {
        curve_panel(area, &title, epochs, bands, y_desc, y_max)
    };
    panel(
        &left,
        &[(&c.train_loss, INK)],
        "training loss (summed cross-entropies)",
        loss_max,
    )?;
    let mut errors = vec![(&c.train_error, PALETTE[0]), (&c.test_error, PALETTE[1])];
    if let Some(v) = &c.validation_error {
        errors.push((v, GREEN));
    }
    // The axis fits the epochs after the first tenth, so that a curve ending near 1% reads
    // as clearly as one near 20%; what the first epochs reach above it is drawn at the top.
    let settled = |b: &Band| {
        let skip = c.train_loss.mean.len() / 10;
        let late = b.epoch.iter().zip(&b.max).filter(|(e, _)| **e > skip);
        late.map(|(_, &m)| m).fold(0.0, f64::max)
    };
    let err_max = headroom(errors.iter().map(|(b, _)| settled(b)).fold(0.0, f64::max));
    let clipped: Vec<Band> = errors.iter().map(|(b, _)| b.clipped(err_max)).collect();
    let any_clipped = errors.iter().zip(&clipped).any(|((b, _), c)| c != *b);
    let errors: Vec<(&Band, RGBColor)> = clipped
        .iter()
        .zip(&errors)
        .map(|(b, (_, c))| (b, *c))
        .collect();
    let desc = if any_clipped {
        "error (%; the first epochs cut at the top)"
    } else {
        "error (%)"
    };
    panel(&right, &errors, desc, err_max)
}

/// One panel of a curves figure: each band's mean as a line over its min-max band.
fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    epochs: f64,
    bands: &[(&Band, RGBColor)],
    y_desc: &str,
    y_max: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(1.0..epochs.max(2.0), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels((epochs as usize).clamp(2, 10))
        // Whole epochs only.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(RGBColor(238, 238, 238))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    for (band, color) in bands {
        let xs = band.epoch.iter().map(|&e| e as f64);
        let outline: Vec<(f64, f64)> = xs
            .clone()
            .zip(band.max.iter().copied())
            .chain(xs.clone().rev().zip(band.min.iter().rev().copied()))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(
            outline,
            color.mix(0.18).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            xs.zip(band.mean.iter().copied()),
            color.stroke_width(2),
        ))?;
    }
    Ok(())
}
