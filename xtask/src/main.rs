//! `cargo xtask …`: semgen's developer commands.
//!
//! - `parity PATH [--device D]`: run a reference fixture (a component folder, the scheduler
//!   file, or a folder of fixtures) and compare every output at the manifest's tolerance.

mod parity;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "semgen developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a component against a reference fixture (exits non-zero on any mismatch).
    Parity(parity::ParityArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Parity(args) => parity::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
