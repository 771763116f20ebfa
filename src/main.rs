use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// tally: RTMP in, fMP4 HLS out of memory, for multi-camera events.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Environment variables TALLY_* override it; see README.
    #[arg(long, short, default_value = "config.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tally=info".into()),
        )
        .init();
    let args = Args::parse();
    let config = tally::config::Config::load(&args.config)
        .with_context(|| format!("configuration {}", args.config.display()))?;
    let server = tally::Server::start(config).await?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
