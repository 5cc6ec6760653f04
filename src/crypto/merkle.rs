//! RFC 6962 / RFC 9162 Merkle tree hashes over the exchange log's entry hashes, with inclusion
//! and consistency proofs. Leaves are entry hashes, which are already SHA-256(0x00 || entry);
//! interior nodes are SHA-256(0x01 || left || right).

use crate::domain::model::Digest;

/// The Merkle tree hash of `leaves` (RFC 6962 MTH); the empty tree hashes to SHA-256("").
pub fn root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => Digest::of(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

fn node(left: &Digest, right: &Digest) -> Digest {
    Digest::of_parts(&[&[1], &left.0, &right.0])
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 PATH).
pub fn inclusion_proof(index: usize, leaves: &[Digest]) -> Vec<Digest> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = inclusion_proof(index, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(index - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Checks that `leaf` is at `index` of a tree of `size` leaves with `root` (RFC 9162 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: Digest,
    proof: &[Digest],
    root: Digest,
) -> bool {
    root_from_inclusion(index, size, leaf, proof) == Some(root)
}

/// The root that `proof` leads to from `leaf` at `index` of a tree of `size` leaves, or `None`
/// when the proof has the wrong shape for that place (RFC 9162 2.1.3.2).
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: Digest,
    proof: &[Digest],
) -> Option<Digest> {
    if index >= size {
        return None;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s_n == 0 {
            return None;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    (s_n == 0).then_some(r)
}

/// The proof that the tree of the first `old` leaves is a prefix of the tree of `leaves`
/// (RFC 6962 PROOF).
pub fn consistency_proof(old: usize, leaves: &[Digest]) -> Vec<Digest> {
    if old == 0 || old >= leaves.len() {
        return Vec::new();
    }
    subproof(old, leaves, true)
}

fn subproof(m: usize, leaves: &[Digest], complete: bool) -> Vec<Digest> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

/// Checks a consistency proof between a tree of `old` leaves with `old_root` and one of `new`
/// leaves with `new_root` (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: Digest,
    new_root: Digest,
    proof: &[Digest],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node(c, &f_r);
            s_r = node(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == old_root && s_r == new_root && s_n == 0
}

/// A whole tree kept level by level, for many inclusion proofs over one tree in O(n) space
/// and O(log n) per proof. An unpaired last node is carried up unchanged, which gives exactly
/// the RFC 6962 tree.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Digest>>,
}

impl Tree {
    /// The tree over `leaves`.
    pub fn new(leaves: Vec<Digest>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    /// The number of leaves.
    pub fn size(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The leaf at `index`.
    pub fn leaf(&self, index: usize) -> Option<Digest> {
        self.levels.first().and_then(|l| l.get(index)).copied()
    }

    /// The root hash.
    pub fn root(&self) -> Digest {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => Digest::of(b""),
        }
    }

    /// The audit path of leaf `index`.
    pub fn inclusion_proof(&self, index: usize) -> Vec<Digest> {
        let mut proof = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            i /= 2;
        }
        proof
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| Digest::of_parts(&[&[0], &(i as u64).to_be_bytes()]))
            .collect()
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not() {
        for n in 1..=20 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(i, &l);
                assert!(
                    verify_inclusion(i as u64, n as u64, l[i], &p, r),
                    "{i} of {n}"
                );
                let wrong = Digest::of(b"x");
                assert!(!verify_inclusion(i as u64, n as u64, wrong, &p, r));
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_prefix_does_not() {
        for n in 1..=20 {
            let l = leaves(n);
            for m in 1..=n {
                let p = consistency_proof(m, &l);
                let (old, new) = (root(&l[..m]), root(&l));
                assert!(
                    verify_consistency(m as u64, n as u64, old, new, &p),
                    "{m} -> {n}"
                );
                let mut rewritten = l.clone();
                rewritten[0] = Digest::of(b"rewritten");
                let p2 = consistency_proof(m, &rewritten);
                assert!(
                    !verify_consistency(m as u64, n as u64, old, root(&rewritten), &p2),
                    "a rewritten log must not prove consistent ({m} -> {n})"
                );
            }
        }
    }

    #[test]
    fn the_level_tree_agrees_with_the_recursive_definition() {
        for n in 1..=40 {
            let l = leaves(n);
            let tree = Tree::new(l.clone());
            assert_eq!(tree.root(), root(&l), "{n}");
            for i in 0..n {
                assert_eq!(
                    tree.inclusion_proof(i),
                    inclusion_proof(i, &l),
                    "{i} of {n}"
                );
            }
        }
    }

    #[test]
    fn roots_follow_rfc_6962_shape() {
        let l = leaves(3);
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), Digest::of(b""));
    }
}
