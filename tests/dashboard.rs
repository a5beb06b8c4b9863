//! The dashboard at `GET /` in headless Chromium against three real node processes: it asks
//! for the cluster key, lists the three nodes and the model, loads a second model from its
//! form, streams a completion from its box, unloads a model, shows a node as down after it
//! is killed, and throws no JavaScript error on the way. A screenshot is written to the
//! test's output folder (`$CARGO_TARGET_TMPDIR/dashboard.png`).

mod common;

use common::browser::{Browser, chromium};
use common::fixture;
use common::nodes::*;

#[test]
fn the_dashboard_shows_the_cluster_live_in_a_real_browser() {
    let Some(chromium) = chromium("the_dashboard_shows_the_cluster_live_in_a_real_browser") else {
        return;
    };
    let cluster = Cluster::start("dashboard", 3, |_| {
        "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 600000\n"
            .to_string()
    });
    let client = cluster.client(0);
    block_on(serve_model(&client, 3, "gpt2", &fixture("gpt2_tiny"), "pipeline:3", 1));
    let key = common::http::bearer(&cluster.key);
    let browser = Browser::start(&chromium);
    // Every member's id, and one that does not coordinate (to be killed), by its process.
    let status = block_on(client.cluster()).unwrap();
    let members = status["nodes"].as_array().unwrap();
    let ids: Vec<String> = members.iter().map(|n| n["node"]["info"]["id"].as_str().unwrap().to_string()).collect();
    let victim = members.iter().find(|n| n["node"]["info"]["id"] != status["coordinator"]).unwrap();
    let victim_index =
        cluster.nodes.iter().position(|n| n.addr == victim["node"]["info"]["addr"].as_str().unwrap()).unwrap();
    let victim = victim["node"]["info"]["id"].as_str().unwrap().to_string();
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let mut cluster = cluster;
    actix_web::rt::System::new().block_on(async {
        let mut page = browser.page().await;
        page.navigate(&format!("http://{}/", cluster.nodes[0].addr)).await;
        // Without the key the page asks for it; with it, the cluster appears.
        page.wait_for("document.getElementById('key-dialog').open === true", 20).await;
        page.eval(&format!(
            "document.getElementById('key-input').value = {key:?}; document.getElementById('key-form').requestSubmit(); true"
        ))
        .await;
        page.wait_for("document.querySelectorAll('#nodes tbody tr').length === 3", 20).await;
        for id in &ids {
            let state = format!("document.querySelector('#nodes tr[data-node=\"{id}\"] .state').textContent");
            page.wait_for(&format!("{state} === 'up'"), 20).await;
        }
        page.wait_for("document.querySelector('#models tr[data-model=\"gpt2\"] .status').textContent === 'ready'", 20).await;
        // A second model through the form, then unloaded with its button.
        let dir = fixture("llama_tiny");
        page.eval(&format!(
            "document.getElementById('load-id').value = 'llama'; document.getElementById('load-path').value = {:?}; \
             document.getElementById('load-form').requestSubmit(); true",
            dir.to_str().unwrap()
        ))
        .await;
        page.wait_for("document.querySelector('#models tr[data-model=\"llama\"] .status')?.textContent === 'ready'", 60).await;
        // The completion box streams text from the cluster.
        page.eval(
            "document.getElementById('completion-model').value = 'gpt2'; \
             document.getElementById('completion-form').requestSubmit(); true",
        )
        .await;
        page.wait_for("document.getElementById('completion-output').textContent.length > 0", 30).await;
        page.eval("document.querySelector('#models tr[data-model=\"llama\"] button').click(); true").await;
        page.wait_for("document.querySelector('#models tr[data-model=\"llama\"]') === null", 30).await;
        // Events: the loads and unload are listed.
        page.wait_for("document.querySelector('#events tbody').textContent.includes('unload')", 20).await;
        // A node killed: the page shows it down.
        signal(&cluster.nodes[victim_index], "-KILL");
        let state = format!("document.querySelector('#nodes tr[data-node=\"{victim}\"] .state').textContent");
        page.wait_for(&format!("{state} === 'down'"), 60).await;
        page.wait_for("document.querySelector('#events tbody').textContent.includes('node_down')", 20).await;
        let png = page.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(&shot, png).unwrap();
        assert!(page.errors.is_empty(), "JavaScript errors on the page: {:?}", page.errors);
        // Nothing about the key was kept outside the session.
        assert_eq!(page.eval("localStorage.length").await, serde_json::json!(0));
    });
    eprintln!("screenshot: {}", shot.display());
    cluster.nodes.remove(victim_index);
}
