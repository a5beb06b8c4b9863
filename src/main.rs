//! The `mlmf` binary.

use clap::Parser;
use clap::error::ErrorKind;

fn main() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
    if let Err(e) = mlmf::cli::dispatch(cli) {
        eprintln!("mlmf: {e}");
        std::process::exit(1);
    }
}
