//! The command line: parsing in [`args`], one file per subcommand, and the one place where
//! errors become exit codes.

pub mod args;
mod bench;
mod check;
mod diff;
mod run;

use clap::Parser;

use crate::error::Error;

/// Exit code for an error: 1 for every error `lesser` reports itself (bad specs, data,
/// options, files); clap exits with 2 for a malformed command line.
pub fn exit_code(e: &Error) -> i32 {
    match e {
        Error::Io { .. }
        | Error::Data { .. }
        | Error::Spec { .. }
        | Error::Protocol(_)
        | Error::Report { .. }
        | Error::Shape(_)
        | Error::Usage(_) => 1,
    }
}

/// Parses the command line, runs it, and returns the process exit code. clap itself exits
/// with 2 on bad usage.
pub fn main() -> i32 {
    let cli = args::Cli::parse();
    let result = match &cli.command {
        args::Command::Check(a) => check::run(a).map(|()| 0),
        args::Command::Run(a) => run::run(a).map(|()| 0),
        args::Command::Bench(a) => bench::run(a).map(|()| 0),
        args::Command::Diff(a) => diff::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            exit_code(&e)
        }
    }
}
