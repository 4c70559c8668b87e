//! Which live peer consumes which datasource: rendezvous (highest random weight) hashing.
//!
//! Every datasource goes to the peer with the highest score `H(datasource, peer)`. The choice
//! is deterministic (every peer computes the same one from the same live set) and moves as
//! little as possible: when a peer joins it takes only the datasources it now scores highest
//! on; when one leaves only its datasources move, each to its runner-up.

use sha2::{Digest, Sha256};

use crate::config::GatewayConfig;

/// The score of `peer` for `datasource`.
fn score(datasource: &str, peer: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(datasource.as_bytes())
        .chain_update([0])
        .chain_update(peer.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The live peer that should consume `datasource`; `None` when no peer is live.
pub fn owner<'a>(datasource: &str, peers: &'a [String]) -> Option<&'a str> {
    peers
        .iter()
        .max_by_key(|peer| (score(datasource, peer), peer.as_str()))
        .map(String::as_str)
}

/// Sets every route's `peer_id` to the owner of its datasource among `peers`; true when any
/// changed. With no live peer nothing changes.
pub fn assign(config: &mut GatewayConfig, peers: &[String]) -> bool {
    let mut changed = false;
    for route in &mut config.routes {
        let Some(owner) = owner(&route.data_source, peers) else {
            return false;
        };
        if route.peer_id.as_deref() != Some(owner) {
            route.peer_id = Some(owner.to_string());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_peer_computes_the_same_owner_whatever_the_order() {
        let mut live = peers(5);
        let first = owner("kafka-trades", &live).unwrap().to_string();
        live.reverse();
        assert_eq!(owner("kafka-trades", &live).unwrap(), first);
        assert_eq!(owner("x", &[]), None);
    }

    #[test]
    fn a_join_or_leave_moves_only_what_it_must() {
        let datasources: Vec<String> = (0..200).map(|i| format!("ds-{i}")).collect();
        let three = peers(3);
        let four = peers(4);
        let before: Vec<&str> = datasources
            .iter()
            .map(|d| owner(d, &three).unwrap())
            .collect();
        let after: Vec<&str> = datasources
            .iter()
            .map(|d| owner(d, &four).unwrap())
            .collect();
        let moved: Vec<usize> = (0..200).filter(|&i| before[i] != after[i]).collect();
        // Every move goes to the newcomer, and it gets a fair share (about a quarter).
        assert!(moved.iter().all(|&i| after[i] == "node-3"));
        assert!((30..=70).contains(&moved.len()), "{} moved", moved.len());
        // The newcomer leaving again restores the old assignment exactly.
        let back: Vec<&str> = datasources
            .iter()
            .map(|d| owner(d, &three).unwrap())
            .collect();
        assert_eq!(back, before);
        // A peer leaving moves only its own datasources.
        let two: Vec<String> = vec!["node-0".into(), "node-2".into()];
        for (i, d) in datasources.iter().enumerate() {
            if before[i] != "node-1" {
                assert_eq!(owner(d, &two).unwrap(), before[i]);
            }
        }
    }
}
