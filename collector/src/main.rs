//! `memcollect`: the command-line entry point.

use clap::Parser;

use memshim_collector::cli::{Cli, Command};
use memshim_collector::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => memshim_collector::run::run(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Report(args) => commands::report::report(args),
        Command::Snapshot(args) => commands::snapshot::snapshot(args),
        Command::Diff(args) => commands::diff::diff(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(failure) => {
            eprintln!("memcollect: {failure}");
            std::process::exit(failure.code);
        }
    }
}
