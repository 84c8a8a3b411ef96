//! One table type for every table `lesser` writes: REPORT.md's, and `lesser diff`'s in
//! Markdown, CSV and aligned text. Cells are plain text; each format escapes them itself, so
//! a name or description can never break a table or smuggle markup into a report.

use std::fmt::Write as _;

/// How a column's cells line up in Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Columns and rows of plain-text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    /// `(row, column)` of cells shown in bold in Markdown.
    bold: Vec<(usize, usize)>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| (name.to_string(), *align))
                .collect(),
            ..Table::default()
        }
    }

    /// Appends a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// Shows column `column` of the last row in bold (Markdown only).
    pub fn bold_last(&mut self, column: usize) {
        if let Some(row) = self.rows.len().checked_sub(1) {
            self.bold.push((row, column));
        }
    }

    /// A GitHub-flavoured Markdown table, every cell escaped.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let header: Vec<String> = self.columns.iter().map(|(n, _)| markdown(n)).collect();
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let rule: String = self
            .columns
            .iter()
            .map(|(_, a)| if *a == Align::Right { "---:|" } else { "---|" })
            .collect();
        let _ = writeln!(s, "|{rule}");
        for (r, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, text)| match self.bold.contains(&(r, c)) {
                    true => format!("**{}**", markdown(text)),
                    false => markdown(text),
                })
                .collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s
    }

    /// CSV with a header row, quoted where needed.
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = w.write_record(self.columns.iter().map(|(n, _)| n));
        for r in &self.rows {
            let _ = w.write_record(r);
        }
        String::from_utf8_lossy(&w.into_inner().unwrap_or_default()).into_owned()
    }

    /// Columns padded to their widest cell, two spaces apart, for a terminal.
    pub fn text(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = String::new();
        for r in std::iter::once(&header).chain(&self.rows) {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{:<w$}", one_line(c)))
                .collect();
            let _ = writeln!(s, "{}", cells.join("  ").trim_end());
        }
        s
    }
}

/// `text` on one line: line breaks and the blank lines around them folded into spaces.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as literal Markdown inline text, safe in a table cell, a heading or an image's
/// alt text: on one line, with whatever could start markup escaped: a cell's end, code,
/// emphasis, HTML and autolinks (a `<` before a letter, `/`, `!` or `?`), entities (a `&`
/// before a letter or `#`), the `](` and `![` that make a link or an image, and the `://`
/// and `www.` that GitHub turns into links. A bracket alone stays as written (grid points and
/// intervals have them), and so does `<0.001`.
pub fn markdown(text: &str) -> String {
    let text = one_line(text);
    let mut s = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        match ch {
            '<' if next.is_ascii_alphabetic() || "/!?".contains(next) => s.push_str("&lt;"),
            '&' if next.is_ascii_alphabetic() || next == '#' => s.push_str("&amp;"),
            '\\' | '|' | '`' | '*' => {
                s.push('\\');
                s.push(ch);
            }
            '!' if next == '[' => s.push_str("\\!"),
            ']' if next == '(' || next == '[' => s.push_str("\\]"),
            c => s.push(c),
        }
    }
    s.replace("://", "\\://").replace("www.", "www\\.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&[("name", Align::Left), ("error", Align::Right)]);
        t.row(vec!["a|b\nc".into(), "1.0%".into()]);
        t.row(vec![
            "<img src=x>![i](http://e/x.png)".into(),
            "2.0%".into(),
        ]);
        t.bold_last(1);
        t
    }

    #[test]
    fn markdown_escapes_every_cell() {
        assert_eq!(
            table().markdown(),
            "| name | error |\n|---|---:|\n| a\\|b c | 1.0% |\n\
             | &lt;img src=x>\\![i\\](http\\://e/x.png) | **2.0%** |\n"
        );
    }

    #[test]
    fn brackets_stay_unless_they_make_a_link() {
        assert_eq!(markdown("g[lr=0.1] [-0.5, +0.2]"), "g[lr=0.1] [-0.5, +0.2]");
        assert_eq!(markdown("[a](b) [c][d]"), "[a\\](b) [c\\][d]");
        assert_eq!(markdown("<0.001 & 1 < 2"), "<0.001 & 1 < 2");
        assert_eq!(markdown("http://e.x www.e.x"), "http\\://e.x www\\.e.x");
        assert_eq!(
            markdown("</a> <!-- &amp; &#60;"),
            "&lt;/a> &lt;!-- &amp;amp; &amp;#60;"
        );
    }

    #[test]
    fn csv_quotes_and_text_aligns() {
        assert_eq!(
            table().csv(),
            "name,error\n\"a|b\nc\",1.0%\n<img src=x>![i](http://e/x.png),2.0%\n"
        );
        let mut t = Table::new(&[("variant", Align::Left), ("n", Align::Right)]);
        t.row(vec!["x".into(), "10".into()]);
        assert_eq!(t.text(), "variant  n\nx        10\n");
    }
}
