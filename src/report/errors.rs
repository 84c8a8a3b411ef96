//! Where a variant's test errors are, as one figure: the test error by class pair (a heat
//! map, mean over rounds, cell values in percent), the confusion of its class outputs (rows:
//! the true class, each row in percent), and its most confidently wrong test samples drawn
//! as pixels.

use plotters::prelude::*;

use crate::record::RoundRecord;
use crate::spec::TaskKind;

/// A wrong test sample to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrong {
    pub round: usize,
    /// Its images, raw (0..255), `side` each.
    pub images: Vec<Vec<f32>>,
    pub classes: Vec<u8>,
    pub target: u16,
    /// The probability its wrong prediction had.
    pub probability: f64,
}

/// A variant's test errors over its rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorView {
    pub variant: String,
    pub kind: TaskKind,
    pub classes: usize,
    /// Test samples and wrong predictions per cell, summed over rounds.
    pub samples: Vec<u64>,
    pub wrong: Vec<u64>,
    pub confusion: Option<Vec<u64>>,
    pub gallery: Vec<Wrong>,
    pub side: (usize, usize),
}

/// The sums of `records`' breakdowns (those that have one, of one class count).
pub fn view(
    variant: &str,
    kind: TaskKind,
    records: &[&RoundRecord],
    gallery: Vec<Wrong>,
    side: (usize, usize),
) -> Option<ErrorView> {
    let all: Vec<&crate::breakdown::Breakdown> = records
        .iter()
        .filter_map(|r| r.result.breakdown.as_ref())
        .collect();
    let first = all.first()?;
    let same = |b: &&&crate::breakdown::Breakdown| {
        b.classes == first.classes && b.samples.len() == first.samples.len()
    };
    let sum = |f: fn(&crate::breakdown::Breakdown) -> Option<&Vec<u32>>| -> Option<Vec<u64>> {
        let mut out: Option<Vec<u64>> = None;
        for b in all.iter().filter(same) {
            let v = f(b)?;
            let acc = out.get_or_insert_with(|| vec![0; v.len()]);
            acc.iter_mut().zip(v).for_each(|(a, &x)| *a += u64::from(x));
        }
        out
    };
    Some(ErrorView {
        variant: variant.to_string(),
        kind,
        classes: first.classes,
        samples: sum(|b| Some(&b.samples))?,
        wrong: sum(|b| Some(&b.wrong))?,
        confusion: sum(|b| b.confusion.as_ref()),
        gallery,
        side,
    })
}

const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(30, 30, 30);
const RED: (f64, f64, f64) = (214.0, 39.0, 40.0);
const BLUE: (f64, f64, f64) = (31.0, 119.0, 180.0);

/// White at 0 to `to` at 1.
fn shade(to: (f64, f64, f64), t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |c: f64| (255.0 - (255.0 - c) * t).round() as u8;
    RGBColor(mix(to.0), mix(to.1), mix(to.2))
}

/// Cell side in pixels for `k` cells across.
fn cell(k: usize) -> i32 {
    (360 / k.max(1) as i32).clamp(6, 36)
}

/// The figure as SVG.
pub fn errors_svg(v: &ErrorView) -> String {
    let c = cell(v.classes);
    let grid = c * v.classes as i32;
    let rows = v.gallery.len().div_ceil(4) as i32;
    let width = (2 * (grid + 170)).max(4 * 190 + 40) as u32;
    let height = (grid + 110 + rows * 110 + 30) as u32;
    super::figures::svg((width, height), |root| draw(root, v))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    v: &ErrorView,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let k = v.classes;
    let rates: Vec<Option<f64>> = v
        .samples
        .iter()
        .zip(&v.wrong)
        .map(|(&n, &w)| (n > 0).then(|| 100.0 * w as f64 / n as f64))
        .collect();
    let (rows, title, ylabel) = match v.kind {
        TaskKind::Pairs => (k, "test error (%) by class pair", "first"),
        TaskKind::Classify => (1, "test error (%) by class", ""),
    };
    let panel = Panel {
        origin: (60, 60),
        k,
        rows,
        color: RED,
        title: title.to_string(),
        x_label: if rows == 1 { "class" } else { "second" },
        y_label: ylabel,
    };
    panel.draw(root, &rates)?;
    if let Some(conf) = &v.confusion {
        let mut shares = Vec::with_capacity(conf.len());
        for row in conf.chunks(k) {
            let n: u64 = row.iter().sum();
            shares.extend(
                row.iter()
                    .map(|&x| (n > 0).then(|| 100.0 * x as f64 / n as f64)),
            );
        }
        let grid = cell(k) * k as i32;
        let p = Panel {
            origin: (60 + grid + 170, 60),
            k,
            rows: k,
            color: BLUE,
            title: "class outputs: % of each true class".into(),
            x_label: "predicted",
            y_label: "true",
        };
        p.draw(root, &shares)?;
    }
    let top = 60 + cell(k) * rows as i32 + 60;
    gallery(root, v, top)
}

/// A heat map: `rows x k` cells, values in percent (`None`: no sample), a colour scale.
struct Panel {
    origin: (i32, i32),
    k: usize,
    rows: usize,
    color: (f64, f64, f64),
    title: String,
    x_label: &'static str,
    y_label: &'static str,
}

impl Panel {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        values: &[Option<f64>],
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (x0, y0) = self.origin;
        let c = cell(self.k);
        let top = values
            .iter()
            .flatten()
            .fold(0.0f64, |a, &b| a.max(b))
            .max(1e-9);
        let text = |s: String, at: (i32, i32), size: i32| {
            Text::new(s, at, (FONT, size).into_font().color(&INK))
        };
        root.draw(&text(self.title.clone(), (x0, y0 - 40), 14))?;
        let labels = self.k <= 30;
        for (i, v) in values.iter().enumerate() {
            let (r, col) = ((i / self.k) as i32, (i % self.k) as i32);
            let (x, y) = (x0 + col * c, y0 + r * c);
            let fill = v.map_or(RGBColor(245, 245, 245), |v| shade(self.color, v / top));
            root.draw(&Rectangle::new([(x, y), (x + c, y + c)], fill.filled()))?;
            if let Some(v) = v.filter(|_| self.k <= 12) {
                let ink = if v / top > 0.6 { WHITE } else { INK };
                let style = (FONT, 11).into_font().color(&ink);
                root.draw(&Text::new(format!("{v:.0}"), (x + 4, y + c / 2 - 5), style))?;
            }
        }
        let (w, h) = (c * self.k as i32, c * self.rows as i32);
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + w, y0 + h)],
            INK.stroke_width(1),
        ))?;
        for i in (0..self.k).filter(|_| labels) {
            let at = x0 + i as i32 * c + c / 2 - 4;
            root.draw(&text(i.to_string(), (at, y0 - 16), 11))?;
            if self.rows > 1 {
                root.draw(&text(
                    i.to_string(),
                    (x0 - 18, y0 + i as i32 * c + c / 2 - 6),
                    11,
                ))?;
            }
        }
        root.draw(&text(
            self.x_label.to_string(),
            (x0 + w / 2 - 20, y0 + h + 6),
            12,
        ))?;
        root.draw(&text(self.y_label.to_string(), (x0 - 52, y0 + h / 2), 12))?;
        // The colour scale, 0 at the bottom.
        let (sx, steps) = (x0 + w + 14, 20);
        for s in 0..steps {
            let t = 1.0 - f64::from(s) / f64::from(steps);
            let y = y0 + s * h.max(40) / steps;
            let fill = shade(self.color, t).filled();
            root.draw(&Rectangle::new(
                [(sx, y), (sx + 12, y + h.max(40) / steps + 1)],
                fill,
            ))?;
        }
        root.draw(&text(format!("{top:.0}%"), (sx + 16, y0 - 2), 11))?;
        root.draw(&text("0%".into(), (sx + 16, y0 + h.max(40) - 10), 11))?;
        Ok(())
    }
}

/// The most confidently wrong test samples, four to a row, each image as pixels.
fn gallery<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    v: &ErrorView,
    top: i32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    if v.gallery.is_empty() {
        return Ok(());
    }
    let style = (FONT, 14).into_font().color(&INK);
    let title = "most confidently wrong test samples (true classes, target, probability of the \
                 wrong answer, round)";
    root.draw(&Text::new(title, (20, top - 24), style))?;
    let (h, w) = v.side;
    let scale = (56 / h.max(w).max(1) as i32).max(1);
    for (n, item) in v.gallery.iter().enumerate() {
        let (x0, y0) = (20 + (n % 4) as i32 * 190, top + (n / 4) as i32 * 110);
        for (j, image) in item.images.iter().enumerate() {
            let ox = x0 + j as i32 * (w as i32 * scale + 6);
            for (p, &value) in image.iter().enumerate() {
                let (x, y) = (ox + (p % w) as i32 * scale, y0 + (p / w) as i32 * scale);
                let g = 255 - value.clamp(0.0, 255.0).round() as u8;
                let fill = RGBColor(g, g, g).filled();
                root.draw(&Rectangle::new([(x, y), (x + scale, y + scale)], fill))?;
            }
        }
        let classes: Vec<String> = item.classes.iter().map(u8::to_string).collect();
        let caption = format!(
            "{}: target {}, p {:.2}, round {}",
            classes.join(" vs "),
            item.target,
            item.probability,
            item.round
        );
        let small = (FONT, 11).into_font().color(&INK);
        root.draw(&Text::new(caption, (x0, y0 + h as i32 * scale + 6), small))?;
    }
    Ok(())
}
