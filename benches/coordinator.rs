//! The coordinator under 1,000 members: the CPU it spends on 1,000 heartbeats a second
//! (stats, alert thresholds, failure detection), and how long 1,000 joins take. The
//! coordinator runs in this process, with no Raft group (its proposals are refused at once,
//! so committing views is not in the figure); members are simulated (all at one peer
//! endpoint that answers everything), heartbeats are sent to the actor directly, so the
//! figure is the coordinator's own work, not the transport's. `cargo bench --bench coordinator`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::{App, HttpServer, web};
use mlmf::cluster::coordinator::{Coordinator, HeartbeatMsg, JoinMsg};
use mlmf::cluster::node::Node;
use mlmf::cluster::wire::{Heartbeat, Join, NodeInfo, NodeStats};
use mlmf::config::NodeConfig;
use mlmf::plan::DeviceKind;
use mlmf_actors::peer::{Handler, PeerConfig, accept};

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let members = 1000usize;
    let secs = 10.0;
    actix_web::rt::System::new().block_on(async move {
        let handler: Handler = Arc::new(|_, _| Box::pin(async { Ok(Vec::new()) }));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(PeerConfig::default()))
                .app_data(web::Data::new(handler.clone()))
                .route("/v1/peer", web::get().to(accept))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let sink = server.addrs()[0].to_string();
        actix_web::rt::spawn(server.run());
        let node = Node::new(NodeConfig::default(), "127.0.0.1:9".into(), None, mlmf::model::default_device(), None);
        let me = NodeInfo {
            id: "coordinator".into(),
            addr: node.addr.clone(),
            memory_bytes: 1 << 34,
            device: DeviceKind::Cpu,
            compute: 1.0,
            raft_id: 1,
        };
        let coordinator = Coordinator::from_view(node, me, &Default::default(), 1).start();
        let t = Instant::now();
        for i in 0..members {
            let info = NodeInfo {
                id: format!("n{i:04}"),
                addr: sink.clone(),
                memory_bytes: 1 << 34,
                device: DeviceKind::Cpu,
                compute: 1.0,
                raft_id: 2 + i as u64,
            };
            coordinator.send(JoinMsg(Join { node: info, held: Vec::new() })).await.unwrap().unwrap();
        }
        let joins = t.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0u64;
        // Members hold the current view, as they do after their first heartbeat.
        let mut version = 0;
        while t0.elapsed().as_secs_f64() < secs {
            tick.tick().await;
            let i = sent as usize % members;
            let hb = Heartbeat {
                node: format!("n{i:04}"),
                seq: sent,
                view_version: version,
                stats: NodeStats { memory_total: 1 << 34, memory_used: 1 << 32, ..NodeStats::default() },
            };
            if let Some(v) = coordinator.send(HeartbeatMsg(hb)).await.unwrap().unwrap().view {
                version = v.version;
            }
            sent += 1;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!("\n| coordinator, {members} members | value |");
        println!("|---|---|");
        println!("| {members} joins (each answered with the view) | {:.0} ms |", joins.as_secs_f64() * 1e3);
        println!("| heartbeats handled | {:.0} /s for {wall:.1} s |", sent as f64 / wall);
        println!("| process CPU (coordinator + the sending loop) | {:.1}% of one core |", 100.0 * cpu / wall);
    });
}
