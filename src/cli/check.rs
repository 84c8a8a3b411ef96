//! `lesser check`: validate specs and print their layers.

use std::fmt::Write as _;

use super::args::CheckArgs;
use super::print;
use crate::compile::show;
use crate::error::{Error, Result};
use crate::variants::{self, Variant};

/// One variant's table: its settings, then a row per layer.
fn describe(out: &mut String, v: &Variant) {
    let (s, m) = (&v.spec, &v.spec.model);
    let description = if s.description.is_empty() {
        "-"
    } else {
        &s.description
    };
    let _ = writeln!(out, "{} ({}): {description}", s.name, s.path.display());
    let d = &v.data;
    let _ = writeln!(
        out,
        "  {} on {} ({}, {}, {} classes), {} train and {} test samples; input {}",
        s.task.describe(),
        s.data.name,
        d.dir.display(),
        d.sizes(),
        d.classes,
        s.data.train_pairs,
        s.data.test_pairs,
        show(v.plan.input(v.plan.stacks[0].0))
    );
    let _ = writeln!(
        out,
        "  weight_sharing = {}, aux_loss = {}, asymmetry = {}, {} epochs, {} rounds",
        m.weight_sharing, m.aux_loss, m.asymmetry, s.train.epochs, s.train.repeats
    );
    for (kind, layers) in &v.plan.stacks {
        for (i, l) in layers.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}[{i:>2}] {:<17} {:>9} -> {:<9} {:>7}",
                kind.key(),
                l.kind,
                show(l.input),
                show(l.output),
                l.params
            );
        }
    }
    let _ = writeln!(
        out,
        "  total trainable parameters: {}, weights (multiplied by, no biases): {}\n",
        v.plan.params, v.plan.weights
    );
}

/// A search's space and what it will spend.
fn describe_search(out: &mut String, s: &variants::Searched) {
    let (search, spec) = (&s.spec.search, &s.spec.spec);
    let _ = writeln!(
        out,
        "{} ({}): search of {} trials ({}), {} rounds each on the search's own data seeds",
        spec.stem,
        spec.path.display(),
        search.trials,
        match search.method {
            crate::spec::Method::Random => "random",
            crate::spec::Method::Tpe => "TPE",
        },
        search.rounds
    );
    for d in &search.space {
        let _ = writeln!(out, "  {:<28} {}", d.key, d.range);
    }
    let rungs = search.rungs(spec.train.epochs);
    let steps: Vec<String> = rungs
        .iter()
        .map(|r| format!("{} trials x {} epochs", r.trials, r.epochs))
        .collect();
    let (rounds, epochs) = search.spent(&rungs);
    let full = search.trials * search.rounds * spec.train.epochs;
    let _ = writeln!(
        out,
        "  budget: {}; {rounds} rounds, {epochs} epochs ({:.2} of the {full} epochs of every \
         trial trained in full)",
        steps.join(", then "),
        epochs as f64 / full.max(1) as f64
    );
    let _ = writeln!(
        out,
        "  then the best {} confirmed on {} reported rounds each{}\n",
        search.top,
        spec.train.repeats,
        spec.baseline
            .as_ref()
            .map_or(String::new(), |b| format!(", against {b}"))
    );
}

/// Prints a table per valid variant (in report order) and one line per bad spec; fails if any
/// is bad.
pub fn run(args: &CheckArgs) -> Result<()> {
    let load = variants::LoadOptions::parse(&args.spec.set, args.spec.max_grid)?
        .data(args.data.as_deref(), None)?;
    let loaded = variants::load(&args.paths, &load)?;
    let mut out = String::new();
    for v in &loaded.variants {
        describe(&mut out, v);
    }
    for s in &loaded.searches {
        describe_search(&mut out, s);
    }
    for f in &loaded.abstract_files {
        let _ = writeln!(out, "{}: abstract (only extended)\n", f.display());
    }
    if loaded.errors.is_empty() {
        let _ = writeln!(out, "{} spec files checked, all valid", loaded.files);
    }
    print(&out)?;
    if loaded.errors.is_empty() {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    for e in &loaded.errors {
        let _ = std::io::Write::write_fmt(&mut err, format_args!("error: {e}\n"));
    }
    Err(Error::CheckFailed {
        bad: loaded.errors.len(),
        total: loaded.files,
    })
}
