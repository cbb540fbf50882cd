//! `cargo xtask data …`: look at the Shapes world.
//!
//! `cargo xtask data preview --count 8 --out preview [--long] [--split train|val|test] [--seed S]`
//! writes `preview/NNNN.gif`, `preview/NNNN/` (PNG frames), `preview/captions.jsonl` and
//! `preview/contact.png`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use semgen_data::{write_preview, PreviewOptions, Split};

/// Data-set tools.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// Data-set subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write Shapes clips as GIFs, PNG frames, captions and a contact sheet.
    Preview(PreviewArgs),
}

/// Arguments of `data preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Number of clips (indices 0..count).
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Long "story" clips instead of short clips.
    #[arg(long)]
    pub long: bool,
    /// Segments per story (with --long).
    #[arg(long, default_value_t = 8)]
    pub segments: usize,
    /// Data split: train, val or test.
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// World seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs a data subcommand.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Preview(p) => {
            let options = PreviewOptions {
                count: p.count,
                out: p.out.clone(),
                long: p.long,
                segments: p.segments,
                split: p.split,
                seed: p.seed,
            };
            let entries = write_preview(&options)
                .with_context(|| format!("writing a preview to {}", p.out.display()))?;
            for entry in &entries {
                println!("{}  {}", entry.clip, entry.caption);
            }
            println!(
                "wrote {} clips to {} (GIFs, PNG frames, captions.jsonl, contact.png)",
                entries.len(),
                p.out.display()
            );
            Ok(())
        }
    }
}
