//! `tandem webhook` on its own, without the rest of the CLI: same flags, same server.
//! Used by the load benchmark (`bench/README.md`, "webhook") and for local runs:
//! `cargo run --release -p tandem-webhook --example webhook -- --cluster never --mode native`.

use clap::Parser;

/// Serve tandem's mutating admission webhook.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: tandem_webhook::WebhookArgs,
}

fn main() -> anyhow::Result<()> {
    tandem_webhook::run_blocking(Cli::parse().args)
}
