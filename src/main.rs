//! `certseal`: the registry service (`serve`) and its command-line client.

use std::process::ExitCode;

use anyhow::Context;
use certseal::cli::{Cli, Command, ServeArgs, run_client};
use certseal::config::{Config, LogFormat, Overrides, RawConfig};
use certseal::server;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            other => run_client(other).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let raw = match &args.config {
        Some(path) => RawConfig::load(path)?,
        None => RawConfig::default(),
    };
    let config = raw.validate(Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        dev_auth: args.dev_auth,
        log_format: args.log_format,
        metrics_listen: args.metrics_listen,
        public_listen: args.public_listen,
    })?;
    init_logging(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    server::serve_on(&config, listener, server::shutdown_signal())?.await
}

fn init_logging(config: &Config) {
    // RUST_LOG, when set, wins over the config file's level.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
