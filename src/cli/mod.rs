//! The `mlmf` command line.

pub mod client_cmds;
pub mod default_model;
pub mod embed;
pub mod generate;
pub mod human;
pub mod inspect;
pub mod node_cmd;
pub mod run;
pub mod serve;
pub mod shell;

use clap::{Parser, Subcommand};

/// mlmf: sharded inference of HuggingFace checkpoints on burn.
#[derive(Debug, Parser)]
#[command(name = "mlmf", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model on token ids in this process, cut by a sharding strategy.
    Run(run::RunArgs),
    /// Show a model's architecture, its sizes per layer and the plan a strategy would make.
    Inspect(inspect::InspectArgs),
    /// Start a cluster node: HTTP API and peer endpoint on one port.
    Node(node_cmd::NodeArgs),
    /// Start N nodes on loopback, load a model on them and serve it over HTTP.
    Serve(serve::ServeArgs),
    /// Load a model onto a running cluster (shows progress until it is ready).
    Load(client_cmds::LoadArgs),
    /// Continue a prompt, streamed: in this process (--model) or on a cluster (--id).
    Generate(generate::GenerateArgs),
    /// Embed texts: in this process (--model) or on a cluster (--id); one JSON array per line.
    Embed(embed::EmbedArgs),
    /// Send one inference request to a running cluster.
    Infer(client_cmds::InferArgs),
    /// Show a running cluster's nodes and models, or one model.
    Status(client_cmds::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// Print the man page (or write every page with --out-dir).
    Man(shell::ManArgs),
}

impl Cli {
    /// Where this command exports its spans, and the `service.instance.id` they carry: a
    /// node's `[telemetry]` and id; for the other commands the `OTEL_EXPORTER_OTLP_*`
    /// variables alone decide.
    pub fn telemetry(&self) -> Result<(crate::config::TelemetryConfig, String), String> {
        match &self.command {
            Command::Node(a) => {
                let cfg = a.config()?;
                let id = cfg.node_id.clone().unwrap_or_else(|| cfg.advertise.clone().unwrap_or(cfg.listen.clone()));
                Ok((cfg.telemetry, id))
            }
            _ => Ok((Default::default(), format!("mlmf-{}", std::process::id()))),
        }
    }
}

/// Runs the parsed command; errors come back as one line.
pub fn dispatch(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Node(a) => node_cmd::node(a),
        Command::Serve(a) => serve::serve(a),
        Command::Load(a) => client_cmds::load(a),
        Command::Infer(a) => client_cmds::infer(a),
        Command::Generate(a) => generate::generate(a),
        Command::Embed(a) => embed::embed(a),
        Command::Status(a) => client_cmds::status(a),
        Command::Completions(a) => shell::completions(a, <Cli as clap::CommandFactory>::command()),
        Command::Man(a) => shell::man(a, <Cli as clap::CommandFactory>::command()),
    }
}
