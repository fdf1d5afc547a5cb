//! `numa_topology`: memory, cores and NICs per NUMA node from `/sys/devices/system/node` and
//! `/sys/class/net`, in the shape of IPA's `numa-topology` inspection collector.

use ferrite_proto::inventory::{NumaCpu, NumaNic, NumaRam, NumaTopology};

use super::Root;

const NODES: &str = "/sys/devices/system/node";

/// The topology, or `None` where IPA sends none: no node directory, or a node, core or NIC
/// whose files do not read as numbers (IPA then drops the whole topology).
pub(crate) fn collect(root: &Root) -> Option<NumaTopology> {
    if !root.path(NODES).is_dir() {
        return None;
    }
    let mut nodes: Vec<u32> = Vec::new();
    for name in root.list(NODES) {
        if name.starts_with("node") && root.path(&format!("{NODES}/{name}")).is_dir() {
            nodes.push(name[4..].parse().ok()?);
        }
    }
    nodes.sort_unstable();
    let mut ram = Vec::new();
    let mut cpus: Vec<NumaCpu> = Vec::new();
    for &node in &nodes {
        let dir = format!("{NODES}/node{node}");
        let meminfo = root.read(&format!("{dir}/meminfo"))?;
        ram.push(NumaRam {
            numa_node: node,
            size_kb: node_mem_total_kb(&meminfo)?,
        });
        let mut threads: Vec<u32> = Vec::new();
        for name in root.list(&dir) {
            if name.starts_with("cpu") && root.path(&format!("{dir}/{name}")).is_dir() {
                threads.push(name[3..].parse().ok()?);
            }
        }
        threads.sort_unstable();
        for thread in threads {
            let core: u32 = root
                .read(&format!("{dir}/cpu{thread}/topology/core_id"))?
                .parse()
                .ok()?;
            match cpus
                .iter_mut()
                .find(|c| c.numa_node == node && c.cpu == core)
            {
                Some(c) => c.thread_siblings.push(thread),
                None => cpus.push(NumaCpu {
                    cpu: core,
                    numa_node: node,
                    thread_siblings: vec![thread],
                }),
            }
        }
    }
    if !root.path("/sys/class/net").is_dir() {
        return None;
    }
    let mut nics = Vec::new();
    for name in root.list("/sys/class/net") {
        let file = format!("/sys/class/net/{name}/device/numa_node");
        if !root.path(&file).is_file() {
            continue;
        }
        let numa_node = root.read(&file)?.parse().ok()?;
        nics.push(NumaNic { name, numa_node });
    }
    Some(NumaTopology { ram, cpus, nics })
}

/// kB of the `MemTotal` line of a node's meminfo (`Node 0 MemTotal:  24683664 kB`); IPA's
/// unit table also knows MB and GB.
pub fn node_mem_total_kb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.contains("MemTotal"))?;
    let mut words = line.split_once(':')?.1.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let scale = match words.next() {
        None | Some("kB" | "KB") => 1,
        Some("MB") => 1024,
        Some("GB") => 1024 * 1024,
        Some(_) => return None,
    };
    value.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn mem_total_lines() {
        let text = "Node 0 MemTotal:       24683664 kB\nNode 0 MemFree:  1 kB\n";
        assert_eq!(node_mem_total_kb(text), Some(24683664));
        assert_eq!(node_mem_total_kb("Node 1 MemTotal: 2 MB"), Some(2048));
        assert_eq!(node_mem_total_kb("Node 1 MemTotal: 2 TB"), None);
        assert_eq!(node_mem_total_kb("Node 1 MemFree: 2 kB"), None);
        assert_eq!(node_mem_total_kb("Node 1 MemTotal: many kB"), None);
    }

    /// Two nodes, two cores each with two threads, one NIC on node 1 and one without a node
    /// file (a virtio NIC's `device` is the virtio device, which has none).
    #[test]
    fn two_nodes_as_ipa() {
        let dir = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        for (node, threads) in [(0, [0, 1, 4, 5]), (1, [2, 3, 6, 7])] {
            w(
                &format!("sys/devices/system/node/node{node}/meminfo"),
                &format!("Node {node} MemTotal: {} kB\n", 1000 + node),
            );
            for t in threads {
                w(
                    &format!("sys/devices/system/cpu/cpu{t}/topology/core_id"),
                    &format!("{}\n", t % 2),
                );
                symlink(
                    format!("../../cpu/cpu{t}"),
                    dir.path()
                        .join(format!("sys/devices/system/node/node{node}/cpu{t}")),
                )
                .unwrap();
            }
        }
        w("sys/devices/system/node/possible", "0-1\n");
        w("sys/class/net/ens1/device/numa_node", "1\n");
        w("sys/class/net/eth0/device/vendor", "0x1af4\n");
        fs::create_dir_all(dir.path().join("sys/class/net/lo")).unwrap();
        let topo = collect(&Root::new(dir.path()).unwrap()).unwrap();
        assert_eq!(
            topo.ram,
            [
                NumaRam {
                    numa_node: 0,
                    size_kb: 1000
                },
                NumaRam {
                    numa_node: 1,
                    size_kb: 1001
                }
            ]
        );
        let cores: Vec<(u32, u32, Vec<u32>)> = topo
            .cpus
            .iter()
            .map(|c| (c.numa_node, c.cpu, c.thread_siblings.clone()))
            .collect();
        assert_eq!(
            cores,
            [
                (0, 0, vec![0, 4]),
                (0, 1, vec![1, 5]),
                (1, 0, vec![2, 6]),
                (1, 1, vec![3, 7])
            ]
        );
        assert_eq!(
            topo.nics,
            [NumaNic {
                name: "ens1".into(),
                numa_node: 1
            }]
        );
        // A malformed core id drops the whole topology, as IPA.
        w("sys/devices/system/cpu/cpu7/topology/core_id", "x\n");
        assert_eq!(collect(&Root::new(dir.path()).unwrap()), None);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(collect(&Root::new(empty.path()).unwrap()), None);
    }
}
