//! `mlmf inspect`: architecture, sizes per layer, and the plan a strategy would make.

use std::path::PathBuf;

use clap::Args;

use std::collections::BTreeMap;

use mlmf_gguf::MetaValue;

use crate::model::{Checkpoint, ModelLayout};
use crate::plan::{DeviceKind, NodeInventory, PlacementRequest, PlacementStrategy, ShardPlan, ShardingStrategy, place};

use super::human::human_bytes;

/// Arguments of `mlmf inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model: a folder (config.json + *.safetensors), a GGUF file or a folder holding one.
    #[arg(long)]
    pub model: PathBuf,
    /// none | layer:K | pipeline:S | tensor:D
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Also place the plan on this many identical nodes.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Replicas per shard when placing.
    #[arg(long, default_value_t = 1)]
    pub replication: usize,
    /// Memory per node when placing, in MiB (default: unlimited).
    #[arg(long)]
    pub node_memory_mib: Option<u64>,
    /// Placement scoring: memory, compute or load.
    #[arg(long, default_value = "memory", value_parser = ["memory", "compute", "load"])]
    pub placement: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn inspect(a: InspectArgs) -> Result<(), String> {
    let strategy: ShardingStrategy = a.strategy.parse().map_err(|e| format!("{e}"))?;
    let ckpt = Checkpoint::open(&a.model).map_err(|e| e.to_string())?;
    let layout = ModelLayout::from_checkpoint(&ckpt).map_err(|e| e.to_string())?;
    let plan = ShardPlan::new(&layout, &strategy).map_err(|e| e.to_string())?;
    let placement = match a.nodes {
        None => None,
        Some(n) => {
            let nodes: Vec<NodeInventory> = (0..n)
                .map(|i| NodeInventory {
                    id: format!("node-{i}"),
                    memory_bytes: a.node_memory_mib.map_or(u64::MAX, |m| m << 20),
                    device: DeviceKind::Cpu,
                    compute: 1.0,
                    load: 0.0,
                })
                .collect();
            let strategy = match a.placement.as_str() {
                "compute" => PlacementStrategy::ComputeBased,
                "load" => PlacementStrategy::LoadBalanced,
                _ => PlacementStrategy::MemoryBased,
            };
            let req = PlacementRequest { replication: a.replication, strategy, ..Default::default() };
            Some(place(&plan, &nodes, &req).map_err(|e| e.to_string())?)
        }
    };
    let by_type = bytes_by_type(&ckpt);
    let gguf = ckpt.gguf.as_ref().map(|g| {
        let meta = g.metadata();
        let str_of =
            |k: &str| meta.get(k).and_then(|v| if let MetaValue::String(s) = v { Some(s.clone()) } else { None });
        serde_json::json!({
            "architecture": str_of("general.architecture"),
            "name": str_of("general.name"),
            "tokenizer": str_of("tokenizer.ggml.model"),
            "pre_tokenizer": str_of("tokenizer.ggml.pre"),
            "chat_template": meta.contains_key("tokenizer.chat_template"),
            "files": g.files.len(),
        })
    });
    if a.json {
        let types: serde_json::Map<String, serde_json::Value> =
            by_type.iter().map(|(t, (n, b))| (t.to_string(), serde_json::json!({"tensors": n, "bytes": b}))).collect();
        let v = serde_json::json!({"config": layout.config, "layout": layout, "plan": plan, "placement": placement,
            "types": types, "gguf": gguf});
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let c = &layout.config;
    println!("model        {}", a.model.display());
    println!(
        "architecture {} ({} layers, hidden {}, {} heads / {} kv heads, head dim {}, mlp {}, vocab {}, positions {})",
        c.arch,
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.intermediate_size,
        c.vocab_size,
        c.max_positions
    );
    println!("files        {} ({} tensors, {})", ckpt.files.len(), ckpt.tensors.len(), human_bytes(ckpt.total_bytes()));
    let types: Vec<String> = by_type.iter().map(|(t, (n, b))| format!("{t} {n} tensors {}", human_bytes(*b))).collect();
    println!("types        {}", types.join(", "));
    if let Some(g) = &gguf {
        let s = |k: &str| g[k].as_str().unwrap_or("-").to_string();
        println!(
            "gguf         {} ({}), tokenizer {} (pre {}), chat template {}",
            s("architecture"),
            s("name"),
            s("tokenizer"),
            s("pre_tokenizer"),
            if g["chat_template"].as_bool() == Some(true) { "present" } else { "absent" }
        );
    }
    println!(
        "parameters   {}{}",
        layout.total_params(),
        if layout.lm_head_tied() { " (LM head tied to embeddings)" } else { "" }
    );
    println!();
    println!("{:<12} {:>12} {:>12}", "part", "params", "bytes");
    println!("{:<12} {:>12} {:>12}", "embeddings", layout.embeddings.params, human_bytes(layout.embeddings.bytes));
    for (i, l) in layout.layers.iter().enumerate() {
        println!("{:<12} {:>12} {:>12}", format!("layer {i}"), l.params, human_bytes(l.bytes));
    }
    println!("{:<12} {:>12} {:>12}", "head", layout.head.params, human_bytes(layout.head.bytes));
    println!();
    println!("plan {} : {} stage(s), {} shard(s)", plan.strategy, plan.num_stages, plan.shards.len());
    for s in &plan.shards {
        let nodes = placement.as_ref().map(|p| format!("  on {}", p.nodes_of(s.id).join(", "))).unwrap_or_default();
        println!("  shard {:<3} stage {:<3} {:<40} {:>12}{nodes}", s.id, s.stage, s.describe(), human_bytes(s.bytes));
    }
    if let Some(p) = &placement {
        println!();
        for (node, bytes) in &p.node_bytes {
            println!("  {node:<10} {}", human_bytes(*bytes));
        }
    }
    Ok(())
}

/// Tensors and bytes per stored type (`Q4_1`, `F32`, ...), as stored.
fn bytes_by_type(ckpt: &Checkpoint) -> BTreeMap<&'static str, (usize, u64)> {
    let mut out: BTreeMap<&'static str, (usize, u64)> = BTreeMap::new();
    for t in ckpt.tensors.values() {
        let e = out.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.bytes;
    }
    out
}
