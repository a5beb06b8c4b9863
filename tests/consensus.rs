//! The control plane on Raft, across real processes: real partitions (network namespaces
//! the test makes: a leader cut off from both followers, a minority follower, a flapping
//! link) and voters killed and restarted from their data directories. No control-plane
//! write is accepted without a majority, every accepted one survives, and there is one
//! registry after healing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fixture;
use common::netns::{Lab, enter};
use common::nodes::{Node, Posts, block_on, free_port, http_sink, key_file, load_request, request, temp_dir};
use mlmf::client::{ClientError, ClusterClient};
use mlmf_actors::auth::ClusterKey;

const HEALTH: &str = "[health]\nheartbeat_interval_ms = 200\nacceptable_pause_ms = 600\nmin_std_dev_ms = 50\nreplace_after_ms = 300\n\
                      [requests]\nattempt_timeout_ms = 1500\n";

/// A lab of three nodes, each with an alert webhook inside its own namespace, the model
/// loaded with a replica on every node, and all three voting.
struct Partitioned {
    lab: Lab,
    key: ClusterKey,
    dir: PathBuf,
    hooks: Vec<Posts>,
}

impl Partitioned {
    fn start(tag: &str) -> Option<Partitioned> {
        let mut lab = Lab::new(3)?;
        let dir = temp_dir(tag);
        let key_path = key_file(&dir, &format!("a cluster key for the {tag} test"));
        let mut hooks = Vec::new();
        for i in 0..3 {
            let path = format!("/run/netns/{}", lab.ns(i));
            let (addr, posts) = std::thread::spawn(move || {
                enter(&path);
                http_sink()
            })
            .join()
            .unwrap();
            hooks.push(posts);
            let config = dir.join(format!("node{i}.toml"));
            let alerts = format!("[alerts]\nwebhooks = [\"http://{addr}/hook\"]\ngroup_ms = 100\n");
            std::fs::write(&config, format!("{HEALTH}{alerts}")).unwrap();
            lab.start(i, (i > 0).then_some(0), &key_path, &config, &dir.join(format!("node{i}.log")));
            if i == 0 {
                let key = ClusterKey::from_file(&key_path).unwrap();
                let addr = lab.addr(0);
                lab.run_in(0, move || async move {
                    let c = ClusterClient::new(&addr, Some(key));
                    let start = Instant::now();
                    while !c.ready().await {
                        assert!(start.elapsed() < Duration::from_secs(30), "the first node did not start");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            }
        }
        let key = ClusterKey::from_file(&key_path).unwrap();
        let me = Partitioned { lab, key, dir, hooks };
        me.wait("three voters with a quorum on every node", Duration::from_secs(60), |s| {
            s.iter().all(|s| s["quorum"] == true && s["raft"]["voters"].as_array().is_some_and(|v| v.len() == 3))
        });
        let model = fixture("gpt2_tiny");
        me.on(0, move |c| async move {
            c.load(&load_request("m", &model, "none", 3)).await.unwrap();
            c.wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
        });
        // Every node routes by a view with the model in it.
        for i in 0..3 {
            me.on(i, |c| async move { infer_until_served(&c, "m").await });
        }
        Some(me)
    }

    /// Runs `f` with a client of node `i`, from inside its namespace.
    fn on<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
        &self,
        i: usize,
        f: impl FnOnce(ClusterClient) -> F + Send + 'static,
    ) -> T {
        let (addr, key) = (self.lab.addr(i), self.key.clone());
        self.lab.run_in(i, move || f(ClusterClient::new(&addr, Some(key))))
    }

    /// Every node's `/v1/cluster` (Null for a node that does not answer).
    fn statuses(&self) -> Vec<serde_json::Value> {
        (0..3).map(|i| self.status(i)).collect()
    }

    /// Node `i`'s `/v1/cluster` (Null when it does not answer within 5 s), with curl inside
    /// its namespace.
    fn status(&self, i: usize) -> serde_json::Value {
        let bearer = format!("Authorization: Bearer {}", String::from_utf8_lossy(self.key.expose()));
        let url = format!("http://{}/v1/cluster", self.lab.addr(i));
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.lab.ns(i), "curl", "-s", "-m", "5", "-H", &bearer, &url])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Waits until `ok` holds of the statuses.
    fn wait(&self, what: &str, within: Duration, ok: impl Fn(&[serde_json::Value]) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.statuses();
            if ok(&s) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "{what}: not within {within:?}: {s:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leader(&self) -> usize {
        let s = self.statuses();
        (0..3).find(|i| s[*i]["raft"]["role"] == "leader").expect("a leader")
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{i}.log"))).unwrap_or_default()
    }
}

impl Drop for Partitioned {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the nodes' logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Infers on `model` until one answer comes (a view may lag a moment), 30 s at most.
async fn infer_until_served(c: &ClusterClient, model: &str) {
    let start = Instant::now();
    loop {
        match c.infer(model, &request(&[1, 2, 3], None)).await {
            Ok(_) => return,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(30), "{model} not served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_no_quorum(r: &Result<mlmf::cluster::wire::ModelStatus, ClientError>) -> bool {
    matches!(r, Err(ClientError::Api { status: 503, code, .. }) if code == "no_quorum")
}

/// One leader, the same term, leader and view version on every node, each with a quorum.
fn one_registry(s: &[serde_json::Value]) -> bool {
    let leaders = s.iter().filter(|s| s["raft"]["role"] == "leader").count();
    leaders == 1
        && s.iter().all(|s| s["quorum"] == true && s["from"] == "coordinator")
        && s.iter().all(|x| x["raft"]["leader"] == s[0]["raft"]["leader"] && x["raft"]["term"] == s[0]["raft"]["term"])
        && s.iter().all(|x| x["raft"]["last_applied"] == s[0]["raft"]["last_applied"])
}

fn model_ids(p: &Partitioned, i: usize) -> Vec<String> {
    p.on(i, |c| async move {
        let mut ids: Vec<String> = c.models().await.unwrap().into_iter().map(|m| m.id).collect();
        ids.sort();
        ids
    })
}

#[test]
fn a_leader_cut_off_from_both_followers_is_replaced_and_steps_down() {
    let Some(p) = Partitioned::start("raft-leader-cut") else { return };
    let old = p.leader();
    let old_name = p.lab.addr(old);
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    p.lab.cut(old);
    // A new leader on the majority side (asking only that side, so the wait is its own).
    let cut = Instant::now();
    let elected = loop {
        let won = others.iter().any(|i| {
            let s = p.status(*i);
            s["raft"]["role"] == "leader" && s["quorum"] == true && s["raft"]["leader"] != old_name.as_str()
        });
        if won {
            break cut.elapsed();
        }
        assert!(cut.elapsed() < Duration::from_secs(15), "no new leader on the majority side");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("a new leader {elected:?} after the leader was cut off (goal: within 3 s)");
    // The old leader knows it is cut off: no quorum, no coordinator, and it says so.
    p.wait("the old leader without a quorum", Duration::from_secs(10), |s| {
        s[old]["quorum"] == false && s[old]["from"] == "local_view"
    });
    let model = fixture("gpt2_tiny");
    let m2 = model.clone();
    let old_addr = p.lab.addr(old);
    let refused = p.on(old, move |c| async move {
        let ready: serde_json::Value = serde_json::from_str(&raw_get(&old_addr, "/readyz").await).unwrap();
        assert_eq!(ready["quorum"], false);
        assert_eq!(ready["coordinator"], false);
        c.load(&load_request("m2", &m2, "none", 1)).await
    });
    assert!(is_no_quorum(&refused), "the old leader accepted a load: {refused:?}");
    wait_no_quorum_alert(&p.hooks[old], "firing");
    // Inference goes on on both sides (the old leader holds a replica of its own).
    p.on(old, |c| async move { infer_until_served(&c, "m").await });
    p.on(others[0], |c| async move { infer_until_served(&c, "m").await });
    // The majority runs the control plane (once it has the old leader down, nothing is
    // placed there).
    p.wait("the old leader down on the majority side", Duration::from_secs(15), |s| has_down(&s[others[0]], &old_name));
    let m3 = model.clone();
    p.on(others[0], move |c| async move {
        c.load(&load_request("m3", &m3, "none", 2)).await.unwrap();
        c.wait_ready("m3", Duration::from_secs(60), |_, _| {}).await.unwrap();
    });
    // Healed: the old leader follows the new one, and there is one registry.
    p.lab.heal(old);
    p.wait("one registry after healing", Duration::from_secs(30), one_registry);
    for i in 0..3 {
        assert_eq!(model_ids(&p, i), vec!["m".to_string(), "m3".to_string()], "node {i}");
        p.on(i, |c| async move { infer_until_served(&c, "m3").await });
    }
    assert_ne!(p.leader(), old, "{}", p.log(old));
    wait_no_quorum_alert(&p.hooks[old], "resolved");
}

/// Waits (10 s at most) for a `no_quorum` notification with `status` at `hooks`.
fn wait_no_quorum_alert(hooks: &Posts, status: &str) {
    let start = Instant::now();
    let seen = || {
        hooks.lock().unwrap().iter().any(|(_, v)| {
            v["alerts"].as_array().is_some_and(|a| a.iter().any(|e| e["rule"] == "no_quorum" && e["status"] == status))
        })
    };
    while !seen() {
        assert!(start.elapsed() < Duration::from_secs(10), "no {status} no_quorum alert: {:?}", hooks.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the `/v1/cluster` answer `s` has node `id` down.
fn has_down(s: &serde_json::Value, id: &str) -> bool {
    s["nodes"]
        .as_array()
        .is_some_and(|n| n.iter().any(|n| n["node"]["info"]["id"] == id && n["node"]["state"] == "down"))
}

/// A GET's body, whatever its status.
async fn raw_get(addr: &str, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let mut resp = awc::Client::new().get(url).send().await.unwrap();
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

#[test]
fn a_minority_follower_refuses_loads_and_a_flapping_leader_link_leaves_one_registry() {
    let Some(p) = Partitioned::start("raft-minority") else { return };
    let leader = p.leader();
    let f = (0..3).find(|i| *i != leader).unwrap();
    p.lab.cut(f);
    p.wait("the cut follower without a quorum", Duration::from_secs(10), |s| s[f]["quorum"] == false);
    let model = fixture("gpt2_tiny");
    let (m, f_addr) = (model.clone(), p.lab.addr(f));
    let (refused, body) = p.on(f, move |c| async move {
        let refused = c.load(&load_request("m2", &m, "none", 1)).await;
        // The raw answer: 503 with a JSON error body.
        let url = format!("http://{f_addr}/v1/models");
        let body = serde_json::json!({"id": "m2", "path": m.display().to_string(), "strategy": "none"});
        let bearer = ("Authorization", "Bearer a cluster key for the raft-minority test");
        let mut resp = awc::Client::new().post(url).insert_header(bearer).send_json(&body).await.unwrap();
        let status = resp.status().as_u16();
        (refused, (status, String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()))
    });
    assert!(is_no_quorum(&refused), "a minority node accepted a load: {refused:?}");
    assert_eq!(body.0, 503, "{}", body.1);
    let v: serde_json::Value = serde_json::from_str(&body.1).unwrap();
    assert_eq!(v["error"]["code"], "no_quorum", "{}", body.1);
    p.on(f, |c| async move { infer_until_served(&c, "m").await });
    let m = model.clone();
    p.on(leader, move |c| async move {
        c.load(&load_request("m2", &m, "none", 2)).await.unwrap();
        c.wait_ready("m2", Duration::from_secs(60), |_, _| {}).await.unwrap();
    });
    p.lab.heal(f);
    p.wait("the follower back", Duration::from_secs(30), one_registry);
    p.on(f, |c| async move { infer_until_served(&c, "m2").await });
    // Flapping: the leader's link goes down and up at random for a while, loads are tried
    // on every node meanwhile; each one accepted must be in the one registry after.
    let mut accepted = vec!["m".to_string(), "m2".to_string()];
    let mut refusals = 0;
    let leader = p.leader();
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(12) {
        p.lab.cut(leader);
        std::thread::sleep(Duration::from_millis(fastrand::u64(150..900)));
        p.lab.heal(leader);
        for i in 0..3 {
            let id = format!("f{k}");
            k += 1;
            let m = model.clone();
            let idc = id.clone();
            let r = p.on(i, move |c| async move {
                tokio::time::timeout(Duration::from_secs(8), c.load(&load_request(&idc, &m, "none", 1))).await
            });
            match r {
                Ok(Ok(_)) => accepted.push(id),
                Ok(Err(e)) => {
                    refusals += 1;
                    eprintln!("load {id} on node {i} refused: {e}");
                }
                Err(_) => eprintln!("load {id} on node {i}: no answer in 8 s"),
            }
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(150..900)));
    }
    eprintln!("flapping: {} loads accepted, {refusals} refused", accepted.len() - 2);
    p.wait("one registry after the flapping", Duration::from_secs(40), one_registry);
    accepted.sort();
    for i in 0..3 {
        let ids = model_ids(&p, i);
        for a in &accepted {
            assert!(ids.contains(a), "node {i} lost the accepted load {a}: {ids:?}");
        }
        assert_eq!(ids, model_ids(&p, 0), "two registries");
    }
}

/// A node on 127.0.0.1 with its own data directory.
fn start_with_dir(addr: &str, join: Option<&str>, key: &Path, dir: &Path) -> Node {
    let config = dir.join("node.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&config, format!("data_dir = {:?}\n{HEALTH}", dir.join("data").display().to_string())).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mlmf"));
    cmd.args(["node", "--listen", addr, "--cluster-key-file"]).arg(key).arg("--config").arg(&config);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let log = std::fs::File::create(dir.join(format!("node-{}.log", fastrand::u32(..)))).unwrap();
    let child = cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap();
    Node { child, addr: addr.to_string() }
}

#[test]
fn voters_killed_and_restarted_from_their_data_directories_rejoin_and_catch_up() {
    let dir = temp_dir("raft-restart");
    let key_path = key_file(&dir, "a cluster key for the raft restart test");
    let key = ClusterKey::from_file(&key_path).unwrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let dirs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("n{i}"))).collect();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for i in 0..3 {
        nodes.push(Some(start_with_dir(&addrs[i], (i > 0).then(|| addrs[0].as_str()), &key_path, &dirs[i])));
        if i == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let client = |i: usize| ClusterClient::new(&addrs[i], Some(key.clone()));
    let status = |i: usize| block_on(async { client(i).cluster().await.unwrap_or_default() });
    let wait = |what: &str, ok: &dyn Fn(&[serde_json::Value]) -> bool| {
        let start = Instant::now();
        loop {
            let s: Vec<serde_json::Value> = (0..3).map(status).collect();
            if ok(&s) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: {s:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let voting = |s: &[serde_json::Value]| {
        s.iter().all(|s| s["quorum"] == true && s["raft"]["voters"].as_array().is_some_and(|v| v.len() == 3))
    };
    wait("three voters", &voting);
    let model = fixture("gpt2_tiny");
    block_on(async {
        client(0).load(&load_request("m", &model, "none", 3)).await.unwrap();
        client(0).wait_ready("m", Duration::from_secs(60), |_, _| {}).await.unwrap();
    });
    let ids: Vec<serde_json::Value> = (0..3).map(|i| status(i)["raft"]["id"].clone()).collect();
    // A follower killed -9; the other two go on changing the registry; it comes back with its
    // directory, keeps its Raft id and its vote, and catches up.
    let s: Vec<serde_json::Value> = (0..3).map(status).collect();
    let leader = (0..3).find(|i| s[*i]["raft"]["role"] == "leader").unwrap();
    for victim in [(0..3).find(|i| *i != leader).unwrap(), leader] {
        let mut n = nodes[victim].take().unwrap();
        let _ = n.child.kill();
        let _ = n.child.wait();
        let alive: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
        // Loads wait until the survivors have it down (nothing is placed on it then).
        wait("the killed voter down", &|s: &[serde_json::Value]| has_down(&s[alive[0]], &addrs[victim]));
        let id = format!("after-{victim}");
        let (m, idc, c) = (model.clone(), id.clone(), client(alive[0]));
        block_on(async move {
            let start = Instant::now();
            // The survivors may be electing a leader for a moment.
            loop {
                match c.load(&load_request(&idc, &m, "none", 1)).await {
                    Ok(_) => break,
                    Err(e) => assert!(start.elapsed() < Duration::from_secs(30), "no load on the survivors: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            c.wait_ready(&idc, Duration::from_secs(60), |_, _| {}).await.unwrap();
        });
        let join = addrs[alive[0]].clone();
        nodes[victim] = Some(start_with_dir(&addrs[victim], Some(&join), &key_path, &dirs[victim]));
        wait("the restarted voter caught up", &|s: &[serde_json::Value]| {
            voting(s)
                && s[victim]["raft"]["id"] == ids[victim]
                && s.iter().all(|x| x["raft"]["last_applied"] == s[alive[0]]["raft"]["last_applied"])
                && s.iter().filter(|x| x["raft"]["role"] == "leader").count() == 1
        });
        let ids_now: Vec<String> = block_on(async {
            let mut v: Vec<String> = client(victim).models().await.unwrap().into_iter().map(|m| m.id).collect();
            v.sort();
            v
        });
        assert!(ids_now.contains(&id), "{ids_now:?}");
        // It routes by the committed view: it serves the model loaded while it was dead.
        block_on(infer_until_served(&client(victim), &id));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
