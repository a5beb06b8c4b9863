//! The `mlmf` binary.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = mlmf::cli::Cli::parse();
    if let Err(e) = mlmf::cli::dispatch(cli) {
        eprintln!("mlmf: {e}");
        std::process::exit(1);
    }
}
