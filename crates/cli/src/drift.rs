//! `easel drift`: how far the prompts of the last hours and the last day
//! have moved from the 7 days before, from the figures every API process
//! writes to the configured database (docs/drift.md), and the sampled
//! prompts that moved the last day's distribution most. Prompt text is
//! shown only where it was kept (`provenance.include_prompt`); otherwise
//! the prompt's hash.

use std::path::PathBuf;

use clap::Args;

/// Flags of `easel drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// How many of the prompts that moved it most to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `easel drift`.
pub fn run(config_file: Option<PathBuf>, args: DriftArgs) -> anyhow::Result<()> {
    crate::keys::runtime()?.block_on(async {
        let db = crate::keys::open(config_file).await?;
        let now = db.now().timestamp_millis();
        let report = easel_server::drift::report(&db, now, args.top).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        println!(
            "baseline (the 7 days before the last day): {} prompts",
            report.baseline_prompts
        );
        for w in &report.windows {
            let score = w
                .score
                .map_or_else(|| "not enough prompts".to_string(), |s| format!("{s:.4}"));
            println!("drift {:<3} {score}  ({} prompts)", w.window, w.prompts);
        }
        if !report.movers.is_empty() {
            println!("prompts that moved the last day most:");
            for m in &report.movers {
                let text = m
                    .prompt
                    .clone()
                    .unwrap_or_else(|| format!("(prompt text not kept; blake3 {})", m.prompt_hash));
                println!("  {:>7.4}  {text}", m.along);
            }
        }
        Ok(())
    })
}
