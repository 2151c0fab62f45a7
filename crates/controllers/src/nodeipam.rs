//! `node-ipam-controller` (upstream's `pkg/controller/nodeipam` with the
//! `RangeAllocator`): with `--allocate-node-cidrs`, every node gets a block of
//! `--cluster-cidr` (`--node-cidr-mask-size`, /24 by default) as its `spec.podCIDR` and
//! `spec.podCIDRs`, which the node's network plugin hands pod addresses out of. Blocks
//! nodes already hold are marked taken at start and on sight; a deleted node's block is
//! free again. Blocks are handed out round-robin from the last one given, as upstream's
//! `CidrSet` does, so a block just freed is not reused at once. When none is left:
//! the `CIDRNotAvailable` event on the node, and the node retried.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use keelson_api::k8s_openapi::api::core::v1::Node;
use keelson_runtime::controller::{Action, Context, StartFuture, run_workers};
use keelson_runtime::events::{EventType, Recorder};
use keelson_runtime::informer::{Change, Informer, Key};
use keelson_runtime::queue::WorkQueue;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::lock;
use crate::nodeutil;

pub const NAME: &str = "node-ipam-controller";

/// The range and block size (`--cluster-cidr`, `--node-cidr-mask-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub cluster_cidr: Ipv4Net,
    pub node_cidr_mask_size: u8,
}

impl Settings {
    /// The settings, or why they cannot work (upstream refuses a mask not longer than
    /// the cluster CIDR's, and more than 2^16 blocks).
    pub fn new(cluster_cidr: &str, node_cidr_mask_size: u8) -> Result<Self, String> {
        let cluster_cidr: Ipv4Net = cluster_cidr
            .parse()
            .map_err(|e| format!("invalid --cluster-cidr {cluster_cidr:?}: {e}"))?;
        let cluster_cidr = cluster_cidr.trunc();
        if node_cidr_mask_size <= cluster_cidr.prefix_len() || node_cidr_mask_size > 30 {
            return Err(format!(
                "--node-cidr-mask-size {node_cidr_mask_size} must be longer than the cluster CIDR's /{} and at most 30",
                cluster_cidr.prefix_len()
            ));
        }
        if node_cidr_mask_size - cluster_cidr.prefix_len() > 16 {
            return Err(
                "the cluster CIDR holds more than 65536 node blocks; use a larger --node-cidr-mask-size"
                    .into(),
            );
        }
        Ok(Settings { cluster_cidr, node_cidr_mask_size })
    }
}

/// Which blocks of the range are taken (upstream's `CidrSet`).
#[derive(Debug)]
pub struct CidrSet {
    base: u32,
    mask: u8,
    used: Vec<bool>,
    next: usize,
}

impl CidrSet {
    pub fn new(settings: Settings) -> Self {
        let blocks = 1usize << (settings.node_cidr_mask_size - settings.cluster_cidr.prefix_len());
        CidrSet {
            base: u32::from(settings.cluster_cidr.network()),
            mask: settings.node_cidr_mask_size,
            used: vec![false; blocks],
            next: 0,
        }
    }

    fn block(&self, index: usize) -> Ipv4Net {
        let step = 1u32 << (32 - self.mask);
        let address = Ipv4Addr::from(self.base + step * index as u32);
        Ipv4Net::new(address, self.mask).expect("a valid prefix length")
    }

    fn index(&self, cidr: &Ipv4Net) -> Option<usize> {
        if cidr.prefix_len() != self.mask {
            return None;
        }
        let offset = u32::from(cidr.network()).checked_sub(self.base)?;
        let index = (offset >> (32 - self.mask)) as usize;
        (index < self.used.len()).then_some(index)
    }

    /// The next free block, taken.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let n = self.used.len();
        let index = (0..n).map(|i| (self.next + i) % n).find(|&i| !self.used[i])?;
        self.used[index] = true;
        self.next = (index + 1) % n;
        Some(self.block(index))
    }

    /// Marks `cidr` taken; false if it is not a block of the range.
    pub fn occupy(&mut self, cidr: &Ipv4Net) -> bool {
        match self.index(cidr) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, cidr: &Ipv4Net) {
        if let Some(i) = self.index(cidr) {
            self.used[i] = false;
        }
    }
}

pub fn starter(settings: Option<Settings>) -> impl Fn(Context) -> StartFuture + Send + Sync {
    move |context| Box::pin(run(context, settings))
}

struct Controller {
    nodes: Arc<Informer<Node>>,
    set: Mutex<CidrSet>,
    /// The block each node holds, as this controller knows it.
    held: Mutex<HashMap<String, Ipv4Net>>,
    recorder: Recorder,
    api: Api<Node>,
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    let cidr = spec.pod_cidrs.as_ref().and_then(|c| c.first()).or(spec.pod_cidr.as_ref())?;
    cidr.parse().ok()
}

async fn run(context: Context, settings: Option<Settings>) -> keelson_runtime::Result<()> {
    let Some(settings) = settings else {
        // `--allocate-node-cidrs=false`: nothing to do, as upstream's controller is not
        // started then.
        context.stopped().await;
        return Ok(());
    };
    let nodes = context.informers.get::<Node>();
    let queue: WorkQueue<Key> = context.queue();
    let controller = Arc::new(Controller {
        nodes: nodes.clone(),
        set: Mutex::new(CidrSet::new(settings)),
        held: Mutex::new(HashMap::new()),
        recorder: Recorder::new(context.client.clone(), "cidrAllocator", None),
        api: Api::all(context.client.clone()),
    });
    nodes.wait_synced().await;
    // Blocks taken before this controller started are never handed out again.
    for node in nodes.list() {
        if let Some(cidr) = pod_cidr(&node) {
            controller.occupy(node.metadata.name.as_deref().unwrap_or_default(), cidr);
        }
    }
    {
        let c = controller.clone();
        let queue = queue.clone();
        nodes.on_change(move |change| {
            let node = change.object();
            let name = node.metadata.name.clone().unwrap_or_default();
            match change {
                Change::Deleted(_) => c.release(&name),
                _ => queue.add(name),
            }
        });
    }
    run_workers(&context, queue, 1, move |name: Key| {
        let c = controller.clone();
        async move { c.sync(&name).await }
    })
    .await;
    Ok(())
}

impl Controller {
    fn occupy(&self, node: &str, cidr: Ipv4Net) {
        if lock(&self.set).occupy(&cidr) {
            lock(&self.held).insert(node.to_owned(), cidr);
        } else {
            tracing::warn!(node, cidr = %cidr, "the node's pod CIDR is outside the cluster CIDR");
        }
    }

    fn release(&self, node: &str) {
        if let Some(cidr) = lock(&self.held).remove(node) {
            lock(&self.set).release(&cidr);
        }
    }

    async fn sync(&self, name: &str) -> Result<Action, kube::Error> {
        let Some(node) = self.nodes.get(name) else { return Ok(Action::AwaitChange) };
        if let Some(cidr) = pod_cidr(&node) {
            if lock(&self.held).get(name) != Some(&cidr) {
                self.occupy(name, cidr);
            }
            return Ok(Action::AwaitChange);
        }
        // A block given earlier whose write the informer has not shown yet is reused.
        let given = lock(&self.held).get(name).copied();
        let Some(cidr) = given.or_else(|| lock(&self.set).allocate()) else {
            let message = format!("Node {name} status is now: CIDRNotAvailable");
            self.recorder.event(
                &nodeutil::reference(&node),
                EventType::Normal,
                "CIDRNotAvailable",
                &message,
            );
            return Ok(Action::RequeueAfter(std::time::Duration::from_secs(10)));
        };
        lock(&self.held).insert(name.to_owned(), cidr);
        let text = cidr.to_string();
        let patch = json!({ "spec": { "podCIDR": text, "podCIDRs": [text] } });
        match self.api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {
                tracing::info!(node = name, cidr = %cidr, "allocated the node's pod CIDR");
                Ok(Action::AwaitChange)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                self.release(name);
                Ok(Action::AwaitChange)
            }
            Err(e) => {
                self.release(name);
                let message = format!("Node {name} status is now: CIDRAssignmentFailed");
                self.recorder.event(
                    &nodeutil::reference(&node),
                    EventType::Warning,
                    "CIDRAssignmentFailed",
                    &message,
                );
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_go_round_robin_and_come_back_when_released() {
        let settings = Settings::new("10.42.0.0/22", 24).expect("valid");
        let mut set = CidrSet::new(settings);
        let a = set.allocate().expect("one");
        assert_eq!(a.to_string(), "10.42.0.0/24");
        assert!(set.occupy(&"10.42.2.0/24".parse().expect("cidr")));
        assert_eq!(set.allocate().map(|c| c.to_string()).as_deref(), Some("10.42.1.0/24"));
        assert_eq!(set.allocate().map(|c| c.to_string()).as_deref(), Some("10.42.3.0/24"));
        assert_eq!(set.allocate(), None, "all four taken");
        set.release(&a);
        assert_eq!(set.allocate(), Some(a));
        assert!(!set.occupy(&"10.43.0.0/24".parse().expect("cidr")), "outside the range");
        assert!(!set.occupy(&"10.42.0.0/25".parse().expect("cidr")), "not a block");
    }

    #[test]
    fn settings_refuse_what_cannot_work() {
        assert!(Settings::new("10.42.0.0/16", 24).is_ok());
        assert!(Settings::new("10.42.0.0/16", 16).is_err());
        assert!(Settings::new("10.0.0.0/8", 25).is_err());
        assert!(Settings::new("nonsense", 24).is_err());
        let settings = Settings::new("10.42.7.9/16", 24).expect("valid");
        assert_eq!(settings.cluster_cidr.to_string(), "10.42.0.0/16", "the network of the address");
    }
}
