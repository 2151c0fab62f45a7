//! `keelson hollow-nodes`: simulated kubelets for scale tests, against the API server
//! a kubeconfig names (`keelson_hollow`). Never started by `keelson server`.

use std::path::PathBuf;

use anyhow::Context;
use keelson_hollow::cidr::Ipv4Cidr;
use keelson_hollow::defaults;
use keelson_hollow::status::Shape;

/// Flags by kubemark's and kube-controller-manager's names where they have one.
#[derive(clap::Args)]
pub struct HollowNodesArgs {
    /// How many nodes to run.
    #[arg(long)]
    pub count: u32,
    /// The kubeconfig the process asks for node certificates and watches pods with;
    /// its user must be allowed to create `certificatesigningrequests/nodeclient` (the
    /// admin is).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Node `i` is `<prefix><i>`.
    #[arg(long, default_value = defaults::NAME_PREFIX)]
    pub name_prefix: String,
    /// Where the nodes' client certificates are kept between runs [default: `hollow-certs`
    /// beside the kubeconfig]
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Each node's CPU capacity.
    #[arg(long, default_value = defaults::CPU)]
    pub cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = defaults::MEMORY)]
    pub memory: String,
    /// Each node's pod capacity.
    #[arg(long, default_value_t = defaults::PODS)]
    pub pods: u32,
    /// Zones the nodes are spread over (`zone-0` …).
    #[arg(long, default_value_t = defaults::ZONES)]
    pub zones: u32,
    /// The nodes' `topology.kubernetes.io/region`.
    #[arg(long, default_value = defaults::REGION)]
    pub region: String,
    /// The range the nodes' pod CIDRs are taken from, one block per node.
    #[arg(long, default_value = defaults::POD_CIDR)]
    pub pod_cidr: Ipv4Cidr,
    /// The size of each node's pod CIDR.
    #[arg(long, default_value_t = defaults::NODE_CIDR_MASK_SIZE, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub node_cidr_mask_size: u8,
    /// The range the nodes' InternalIPs are taken from.
    #[arg(long, default_value = defaults::NODE_IP_RANGE)]
    pub node_ip_range: Ipv4Cidr,
    /// Delete the Nodes and their Leases on SIGINT/SIGTERM (kept by default).
    #[arg(long)]
    pub delete_nodes_on_exit: bool,
}

/// Runs the nodes until SIGINT or SIGTERM.
pub async fn run(args: HollowNodesArgs) -> anyhow::Result<()> {
    for (flag, value) in [("--cpu", &args.cpu), ("--memory", &args.memory)] {
        keelson_apiserver::quantity::Quantity::parse(value)
            .with_context(|| format!("{flag} {value:?} is not a quantity"))?;
    }
    let cert_dir = match args.cert_dir {
        Some(dir) => dir,
        None => args.kubeconfig.parent().unwrap_or(std::path::Path::new(".")).join("hollow-certs"),
    };
    let mut config = keelson_hollow::Config::new(args.kubeconfig, cert_dir, args.count);
    config.name_prefix = args.name_prefix;
    config.shape = Shape {
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        region: args.region,
        ..config.shape
    };
    config.zones = args.zones;
    config.pod_cidr = args.pod_cidr;
    config.node_cidr_mask_size = args.node_cidr_mask_size;
    config.node_ip_range = args.node_ip_range;
    config.delete_nodes_on_exit = args.delete_nodes_on_exit;
    config.places()?;
    let stop = crate::server::shutdown_signal()?;
    keelson_hollow::run(config, async move {
        let _ = stop.await;
    })
    .await?;
    Ok(())
}
