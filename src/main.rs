//! The `mlmf` binary.

use clap::Parser;
use clap::error::ErrorKind;

fn main() {
    let cli = match mlmf::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line: clap's first line without its "error: " prefix and help trailer.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("mlmf: {} (see mlmf --help)", first.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    // Kept to the end: dropping it sends the spans still batched.
    let telemetry = match logging(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mlmf: {e}");
            std::process::exit(1);
        }
    };
    let result = mlmf::cli::dispatch(cli);
    drop(telemetry);
    if let Err(e) = result {
        eprintln!("mlmf: {e}");
        std::process::exit(1);
    }
}

/// Logs to stderr as `RUST_LOG` asks, and exports `mlmf`'s spans over OTLP when an endpoint
/// is configured (independently of `RUST_LOG`: a quiet log still exports every request).
fn logging(cli: &mlmf::cli::Cli) -> Result<Option<mlmf::server::telemetry::Telemetry>, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let (cfg, instance) = cli.telemetry()?;
    let telemetry = mlmf::server::telemetry::Telemetry::start(&cfg, &instance).map_err(|e| e.to_string())?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(tracing_subscriber::EnvFilter::from_default_env());
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("mlmf", tracing::Level::INFO)
        .with_target("mlmf_actors", tracing::Level::INFO);
    let otel = telemetry.as_ref().map(|t| t.layer().with_filter(spans));
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(t) = &telemetry {
        tracing::info!(endpoint = t.endpoint(), "exporting spans over OTLP");
    }
    Ok(telemetry)
}
