//! Consistent hash ring: maps node UUIDs to conductors, as Ironic's `common/hash_ring.py`
//! (through tooz) does: every conductor is hashed onto the ring at `2^partition_exponent`
//! points (MD5 of `hostname` + the point's number), and a node belongs to the conductor
//! at the first point at or after the MD5 of its UUID, wrapping around. Adding or removing
//! one of N conductors moves about 1/N of the nodes and leaves the others where they are.

use md5::{Digest, Md5};

/// 2^7 points per conductor (`--hash-partition-exponent`). Ironic's default is 5; with
/// 32 points three conductors' loads differ by up to ~2×, with 128 by ~25 %.
pub const DEFAULT_PARTITION_EXPONENT: u32 = 7;

/// The first 8 bytes of the MD5 of `data`, big-endian: tooz's key, truncated.
fn hash(data: &[u8]) -> u64 {
    let d = Md5::digest(data);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A ring over a set of conductor hostnames.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    /// (point, index into `hosts`), sorted by point.
    points: Vec<(u64, usize)>,
    hosts: Vec<String>,
}

impl HashRing {
    /// A ring over `hosts` (duplicates count once) with `2^partition_exponent` points each.
    pub fn new<S: AsRef<str>>(hosts: &[S], partition_exponent: u32) -> HashRing {
        let mut hosts: Vec<String> = hosts.iter().map(|h| h.as_ref().to_string()).collect();
        hosts.sort();
        hosts.dedup();
        let per_host = 1u64 << partition_exponent.min(16);
        let mut points = Vec::with_capacity(hosts.len() * per_host as usize);
        for (i, h) in hosts.iter().enumerate() {
            for p in 0..per_host {
                points.push((hash(format!("{h}{p}").as_bytes()), i));
            }
        }
        // Ties (practically never) go to the smaller hostname, the same on every conductor.
        points.sort_unstable();
        HashRing { points, hosts }
    }

    /// The conductor that owns `key` (a node UUID); `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash(key.as_bytes());
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, host) = self.points[i % self.points.len()];
        Some(&self.hosts[host])
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, seed: u64) -> Vec<String> {
        // Deterministic UUID-shaped keys: a seeded loop instead of a property-test crate.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let y = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
                format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    (y >> 32) as u32,
                    (y >> 16) as u16,
                    (y >> 4) as u16 & 0xfff,
                    y as u16 & 0xfff,
                    x & 0xffff_ffff_ffff
                )
            })
            .collect()
    }

    #[test]
    fn empty_ring_owns_nothing_and_one_host_owns_all() {
        assert_eq!(HashRing::new::<&str>(&[], 5).owner("x"), None);
        let r = HashRing::new(&["only"], 5);
        assert!(keys(100, 1).iter().all(|k| r.owner(k) == Some("only")));
    }

    #[test]
    fn the_same_hosts_in_any_order_give_the_same_ring() {
        let a = HashRing::new(&["c1", "c2", "c3"], 5);
        let b = HashRing::new(&["c3", "c1", "c2", "c1"], 5);
        for k in keys(500, 2) {
            assert_eq!(a.owner(&k), b.owner(&k));
        }
    }

    /// Property: for many seeds and ring sizes, adding one conductor to N moves only
    /// nodes onto the new one, about 1/(N+1) of them; removing one moves only its own
    /// nodes, about 1/N. With 2^7 points per host the share stays within ±50 % of the
    /// ideal; the load of every host within 2× of the mean.
    #[test]
    fn adding_or_removing_one_conductor_moves_about_one_nth() {
        let nodes = keys(3000, 7);
        for seed in 0..12u64 {
            let n = 2 + (seed as usize % 6);
            let hosts: Vec<String> = (0..n)
                .map(|i| format!("conductor-{seed}-{i}.example"))
                .collect();
            let ring = HashRing::new(&hosts, 7);
            // Add one.
            let mut more = hosts.clone();
            let new = format!("new-{seed}");
            more.push(new.clone());
            let grown = HashRing::new(&more, 7);
            let mut moved = 0;
            for k in &nodes {
                let (before, after) = (ring.owner(k).unwrap(), grown.owner(k).unwrap());
                if before != after {
                    assert_eq!(after, new, "a node moved between two old conductors");
                    moved += 1;
                }
            }
            let share = moved as f64 / nodes.len() as f64;
            let ideal = 1.0 / (n + 1) as f64;
            eprintln!("adding 1 to {n}: {share:.3} of the nodes moved (ideal {ideal:.3})");
            assert!(
                (share - ideal).abs() < ideal * 0.5,
                "adding 1 to {n}: {share:.3} moved, ideal {ideal:.3}"
            );
            // Remove one.
            let gone = &hosts[seed as usize % n];
            let fewer: Vec<&String> = hosts.iter().filter(|h| *h != gone).collect();
            let shrunk = HashRing::new(&fewer, 7);
            let mut moved = 0;
            for k in &nodes {
                let (before, after) = (ring.owner(k).unwrap(), shrunk.owner(k).unwrap());
                if before != after {
                    assert_eq!(before, gone, "a node of a surviving conductor moved");
                    moved += 1;
                }
            }
            let share = moved as f64 / nodes.len() as f64;
            let ideal = 1.0 / n as f64;
            eprintln!("removing 1 of {n}: {share:.3} of the nodes moved (ideal {ideal:.3})");
            assert!(
                (share - ideal).abs() < ideal * 0.5,
                "removing 1 of {n}: {share:.3} moved, ideal {ideal:.3}"
            );
            // Balance.
            let mean = nodes.len() as f64 / n as f64;
            for h in &hosts {
                let load = nodes
                    .iter()
                    .filter(|k| ring.owner(k) == Some(h.as_str()))
                    .count() as f64;
                assert!(
                    load > mean / 2.0 && load < mean * 2.0,
                    "{h}: {load} nodes, mean {mean}"
                );
            }
        }
    }
}
