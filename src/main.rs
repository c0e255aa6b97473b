//! `mnist-mlp`: the command line. It parses, sets up logging, dispatches to a subcommand and
//! maps the outcome to an exit code: 0 success, 1 runtime error, 2 usage error (clap's own).
//! There is no math here; see the library crate.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::args::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
