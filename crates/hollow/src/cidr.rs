//! Addresses of hollow nodes: IPv4 ranges, the `/24` (by default) of the pod range
//! each node gets as its `spec.podCIDR`, its InternalIP, and the pod IPs it hands out.
//!
//! Keelson's controller manager has no node IPAM controller (upstream's
//! `nodeipam`), so nothing allocates `spec.podCIDR`; a hollow node sets its own when it
//! registers, from its index — the same block on every restart — and keeps whatever
//! CIDR a Node it adopts already has (the field is immutable once set).
//!
//! Pure values: no I/O.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

/// A string that is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct ParseError(pub String);

impl FromStr for Ipv4Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        // As Go's `net.ParseCIDR`: the network of the address given.
        Ok(Ipv4Cidr { network: u32::from(addr) & mask(prefix), prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Ipv4Cidr {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the range holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// The address `offset` places after the network address, if the range holds it.
    pub fn host(&self, offset: u64) -> Option<Ipv4Addr> {
        (offset < self.size()).then(|| Ipv4Addr::from(self.network + offset as u32))
    }

    /// How many blocks of prefix `prefix` the range splits into (none if `prefix` is
    /// shorter than the range's own).
    pub fn blocks(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            return 0;
        }
        1u64 << (prefix - self.prefix)
    }

    /// The `index`-th block of prefix `prefix`, counting from the range's start.
    pub fn block(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.blocks(prefix) {
            return None;
        }
        let network = self.network + (index << (32 - u32::from(prefix))) as u32;
        Some(Ipv4Cidr { network, prefix })
    }
}

/// The pod IPs of one node's pod CIDR, by pod (`namespace/name`). As the bridge CNI
/// plugin with host-local IPAM hands them out: the network address is not used, the
/// first host is the bridge's gateway, the last address is the broadcast; pods get
/// the others, next-fit, so a freed address is not reused at once.
#[derive(Debug)]
pub struct PodIps {
    cidr: Ipv4Cidr,
    by_pod: HashMap<String, u32>,
    used: BTreeSet<u32>,
    next: u32,
}

impl PodIps {
    pub fn new(cidr: Ipv4Cidr) -> Self {
        PodIps { cidr, by_pod: HashMap::new(), used: BTreeSet::new(), next: Self::FIRST }
    }

    const FIRST: u32 = 2;

    /// Offsets `FIRST..last` are for pods.
    fn last(&self) -> u32 {
        (self.cidr.size().saturating_sub(1)).min(u64::from(u32::MAX)) as u32
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// Records that `pod` holds `ip` (a pod adopted with its address). False if `ip`
    /// is outside the pod range or another pod holds it.
    pub fn reserve(&mut self, pod: &str, ip: Ipv4Addr) -> bool {
        if !self.cidr.contains(ip) {
            return false;
        }
        let offset = u32::from(ip) - self.cidr.network;
        if !(Self::FIRST..self.last()).contains(&offset) {
            return false;
        }
        match self.by_pod.get(pod) {
            Some(held) if *held == offset => return true,
            _ if self.used.contains(&offset) => return false,
            Some(_) => self.release(pod),
            None => {}
        }
        self.by_pod.insert(pod.to_owned(), offset);
        self.used.insert(offset);
        true
    }

    /// The address of `pod`: the one it holds, or the next free one; `None` when the
    /// range is exhausted.
    pub fn allocate(&mut self, pod: &str) -> Option<Ipv4Addr> {
        if let Some(offset) = self.by_pod.get(pod) {
            return self.cidr.host(u64::from(*offset));
        }
        let (first, last) = (Self::FIRST, self.last());
        let candidates = (self.next..last).chain(first..self.next.min(last));
        let offset = candidates.into_iter().find(|o| !self.used.contains(o))?;
        self.next = if offset + 1 >= last { first } else { offset + 1 };
        self.used.insert(offset);
        self.by_pod.insert(pod.to_owned(), offset);
        self.cidr.host(u64::from(offset))
    }

    /// Frees the address of `pod`, if it holds one.
    pub fn release(&mut self, pod: &str) {
        if let Some(offset) = self.by_pod.remove(pod) {
            self.used.remove(&offset);
        }
    }

    /// How many pods hold an address.
    pub fn len(&self) -> usize {
        self.by_pod.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pod.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_ranges_as_go_does() {
        assert_eq!(cidr("10.42.0.0/16").to_string(), "10.42.0.0/16");
        // The network of the address given, as `net.ParseCIDR`.
        assert_eq!(cidr("10.42.7.9/16").to_string(), "10.42.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        for bad in ["10.42.0.0", "10.42.0.0/33", "10.42.0/16", "x/8", "::1/64", ""] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_node_gets_its_own_block_by_index() {
        let range = cidr("10.42.0.0/16");
        assert_eq!(range.blocks(24), 256);
        assert_eq!(range.block(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(range.block(24, 1).unwrap().to_string(), "10.42.1.0/24");
        assert_eq!(range.block(24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert_eq!(range.block(24, 256), None);
        // 5,000 nodes need a wider range or smaller blocks.
        assert_eq!(cidr("10.0.0.0/8").blocks(24), 65536);
        assert_eq!(range.blocks(26), 1024);
        assert_eq!(range.block(26, 5).unwrap().to_string(), "10.42.1.64/26");
        assert_eq!(range.blocks(8), 0);
        assert!(range.block(24, 3).unwrap().contains("10.42.3.200".parse().unwrap()));
        assert!(!range.block(24, 3).unwrap().contains("10.42.4.1".parse().unwrap()));
        assert_eq!(range.host(1), Some("10.42.0.1".parse().unwrap()));
        assert_eq!(range.host(65536), None);
    }

    #[test]
    fn pods_get_distinct_addresses_past_the_gateway() {
        let mut ips = PodIps::new(cidr("10.42.3.0/24"));
        assert_eq!(ips.allocate("ns/a"), Some("10.42.3.2".parse().unwrap()));
        assert_eq!(ips.allocate("ns/b"), Some("10.42.3.3".parse().unwrap()));
        // Asking again answers the same address.
        assert_eq!(ips.allocate("ns/a"), Some("10.42.3.2".parse().unwrap()));
        ips.release("ns/a");
        // Next-fit: a freed address is not handed out again at once.
        assert_eq!(ips.allocate("ns/c"), Some("10.42.3.4".parse().unwrap()));
        assert_eq!(ips.len(), 2);
    }

    #[test]
    fn adopted_pods_keep_their_addresses() {
        let mut ips = PodIps::new(cidr("10.42.3.0/24"));
        assert!(ips.reserve("ns/old", "10.42.3.2".parse().unwrap()));
        assert!(ips.reserve("ns/old", "10.42.3.2".parse().unwrap()));
        // Held by another pod, outside the range, the gateway, the broadcast: refused.
        assert!(!ips.reserve("ns/other", "10.42.3.2".parse().unwrap()));
        assert!(!ips.reserve("ns/other", "10.42.4.2".parse().unwrap()));
        assert!(!ips.reserve("ns/other", "10.42.3.1".parse().unwrap()));
        assert!(!ips.reserve("ns/other", "10.42.3.255".parse().unwrap()));
        assert_eq!(ips.allocate("ns/new"), Some("10.42.3.3".parse().unwrap()));
        // A pod that moves to another address frees the first.
        assert!(ips.reserve("ns/old", "10.42.3.9".parse().unwrap()));
        assert!(ips.reserve("ns/other", "10.42.3.2".parse().unwrap()));
    }

    #[test]
    fn a_full_range_hands_out_nothing_until_an_address_is_freed() {
        let mut ips = PodIps::new(cidr("10.42.0.0/29"));
        let got: Vec<_> = (0..5).map(|i| ips.allocate(&format!("ns/{i}"))).collect();
        assert!(got.iter().all(Option::is_some));
        assert_eq!(got[4], Some("10.42.0.6".parse().unwrap()));
        assert_eq!(ips.allocate("ns/x"), None);
        ips.release("ns/1");
        assert_eq!(ips.allocate("ns/x"), Some("10.42.0.3".parse().unwrap()));
    }
}
