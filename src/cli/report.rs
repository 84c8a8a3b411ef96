//! `lesser report`: every report and figure rebuilt from the stored rounds.

use std::io::Write as _;

use super::args::ReportArgs;
use super::run::options;
use crate::error::Result;
use crate::run::rebuild;

/// Rebuilds the reports and says which rounds of the selected specs are not stored.
pub fn run(args: &ReportArgs) -> Result<()> {
    let opts = options(&args.sweep, &args.target, 1)?;
    let r = rebuild(&opts)?;
    let mut err = std::io::stderr().lock();
    for m in &r.missing {
        let _ = writeln!(err, "missing: {m}");
    }
    let _ = writeln!(
        err,
        "{} rounds reported from the store, {} missing; reports in {}",
        r.found,
        r.missing.len(),
        args.target.out.display()
    );
    Ok(())
}
