//! `lesser check`: validate specs and print their layers.

use std::fmt::Write as _;

use super::args::CheckArgs;
use crate::compile::{plan, show};
use crate::error::{Error, Result};
use crate::spec;

/// Prints a table per valid variant and one line per bad spec; fails if any is bad.
pub fn run(args: &CheckArgs) -> Result<()> {
    let files = spec::spec_files(&args.paths)?;
    let mut bad = Vec::new();
    let mut out = String::new();
    for f in &files {
        let checked = spec::load(f).and_then(|s| match s {
            Some(s) => plan(&s).map(|p| Some((s, p))),
            None => Ok(None),
        });
        match checked {
            Ok(Some((s, p))) => {
                let m = &s.model;
                let _ = writeln!(
                    out,
                    "{} ({}): {}",
                    s.name,
                    f.display(),
                    if s.description.is_empty() {
                        "-"
                    } else {
                        &s.description
                    }
                );
                let _ = writeln!(
                    out,
                    "  weight_sharing = {}, aux_loss = {}, asymmetry = {}, {} epochs, {} rounds",
                    m.weight_sharing, m.aux_loss, m.asymmetry, s.train.epochs, s.train.repeats
                );
                for (key, layers) in &p.stacks {
                    for (i, l) in layers.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "  {key}[{i:>2}] {:<17} {:>9} -> {:<9} {:>7}",
                            l.kind,
                            show(l.input),
                            show(l.output),
                            l.params
                        );
                    }
                }
                let _ = writeln!(out, "  total trainable parameters: {}\n", p.params);
            }
            Ok(None) => {
                let _ = writeln!(out, "{}: abstract (only extended)\n", f.display());
            }
            Err(e) => bad.push(e),
        }
    }
    print!("{out}");
    for e in &bad {
        eprintln!("error: {e}");
    }
    if bad.is_empty() {
        println!("{} spec files checked, all valid", files.len());
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{} of {} spec files are invalid",
            bad.len(),
            files.len()
        )))
    }
}
