//! The command line: parsing in [`args`], one file per subcommand, and the one place where
//! results become exit codes (the codes themselves are documented at
//! [`Error::exit_code`](crate::error::Error::exit_code)).

pub mod args;
mod bench;
mod check;
mod diff;
mod eval;
mod progress;
mod report;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::error::{Error, Result};

/// Writes `text` to standard output; a reader that went away is [`Error::BrokenPipe`].
pub(crate) fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::output)
}

/// Parses the command line, runs it, and returns the process exit code. clap itself exits
/// with 2 on bad usage.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match crate::kernels::Kernel::from_env() {
        Err(why) => Err(Error::Usage(why)),
        Ok(_) => dispatch(&cli),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // `lesser ... | head`: the reader has what it wanted; end quietly, as tools do.
        Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            let mut err = std::io::stderr().lock();
            for line in e.to_string().lines() {
                let _ = writeln!(err, "error: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the subcommand; `Ok` holds the exit code.
fn dispatch(cli: &args::Cli) -> Result<u8> {
    match &cli.command {
        args::Command::Check(a) => check::run(a).map(|()| 0),
        args::Command::Run(a) => run::run(a).map(|()| 0),
        args::Command::Bench(a) => bench::run(a).map(|()| 0),
        args::Command::Diff(a) => diff::run(a),
        args::Command::Report(a) => report::run(a).map(|()| 0),
        args::Command::Eval(a) => eval::run(a).map(|()| 0),
    }
}
