//! A sweep's progress on stderr: a bar on a terminal, one line per round otherwise. Progress
//! is a courtesy: failing to print it (a closed or full stderr) never stops the sweep.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::record::{RoundRecord, Status};
use crate::report;
use crate::run::Progress;

/// The display, shared by the sweep's threads.
pub struct Display {
    bar: Option<indicatif::ProgressBar>,
    /// Rounds to train, and finished so far.
    counts: Mutex<(usize, usize)>,
}

impl Progress for Display {
    fn begin(&self, rounds: usize) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = (rounds, 0);
        if let Some(b) = &self.bar {
            b.set_length(rounds as u64);
        }
    }

    fn round(&self, r: &RoundRecord) {
        let what = match r.result.status {
            Status::Ok => format!("test error {}", report::pct(r.result.test_error)),
            Status::Diverged { epoch } => format!("diverged in epoch {epoch}"),
        };
        let line = format!(
            "{} round {}: {what} ({:.1} s)",
            r.variant, r.round, r.seconds
        );
        let (total, done) = {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            c.1 += 1;
            *c
        };
        match &self.bar {
            Some(b) => {
                b.set_message(line);
                b.inc(1);
            }
            None => {
                let _ = writeln!(std::io::stderr(), "[{done}/{total}] {line}");
            }
        }
    }

    fn end(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A bar when stderr is a terminal, plain lines otherwise.
pub fn display() -> Display {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.enable_steady_tick(std::time::Duration::from_millis(500));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rounds  {elapsed} elapsed, ETA {eta}  {msg}",
        ) {
            b.set_style(style);
        }
        b
    });
    Display {
        bar,
        counts: Mutex::new((0, 0)),
    }
}
