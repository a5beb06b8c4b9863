//! The embedded manager (`SimpleDistributedManager`): the builder's node configuration
//! reaches every node it starts. With TLS and a node id in it, the nodes serve HTTPS under
//! ids `<id>-<i>` and the manager's own client speaks HTTPS to them (before, every node was
//! built from the default configuration: plain HTTP, ids from addresses, and the client's
//! HTTPS to them timed out with "the nodes did not form a cluster").

mod common;

use common::fixture;
use common::nodes::{block_on, temp_dir};
use mlmf::config::NodeConfig;
use mlmf::manager::{DistributedConfigBuilder, InferenceRequest, SimpleDistributedManager};
use mlmf::plan::ShardingStrategy;

#[test]
fn the_builders_node_config_reaches_every_node_tls_and_ids_included() {
    let dir = temp_dir("manager-tls");
    let files = mlmf_actors::tls::self_signed(&dir.join("tls"), false).unwrap();
    let (key, _text) = mlmf_actors::auth::ClusterKey::generate().unwrap();
    let node = NodeConfig { node_id: Some("edge".into()), tls: Some(files.clone()), ..NodeConfig::default() };
    let config = DistributedConfigBuilder::new()
        .sharding(ShardingStrategy::PipelineSharding { num_stages: 2 })
        .cluster_key(key.clone())
        .node_config(node)
        .build()
        .unwrap();
    block_on(async {
        let addresses = ["127.0.0.1:0", "127.0.0.1:0"];
        let manager = SimpleDistributedManager::deploy(&fixture("gpt2_tiny"), "g", &addresses, config).await.unwrap();
        let r = manager.inference(InferenceRequest::new("g", vec![vec![464, 968, 758]])).await.unwrap();
        assert_eq!(r.processed_by.len(), 2, "both stages ran: {:?}", r.processed_by);
        // The ids come from the builder's node config.
        let c = manager.client().cluster().await.unwrap();
        let mut ids: Vec<String> = c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"]["info"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["edge-0", "edge-1"]);
        // Every node speaks HTTPS only: a plain client gets no answer from it, one trusting
        // the CA does.
        for addr in manager.addresses() {
            let plain = mlmf::client::ClusterClient::new(&addr, Some(key.clone()));
            assert!(plain.cluster().await.is_err(), "{addr} answered plain HTTP");
            let tls = plain.with_tls(files.load().unwrap().client);
            tls.cluster().await.unwrap();
        }
        manager.shutdown();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
