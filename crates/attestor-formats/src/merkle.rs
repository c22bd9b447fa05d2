//! RFC 6962 / RFC 9162 Merkle tree hashing and inclusion proofs.
//!
//! Owns: the leaf and interior node hash functions
//! (`SHA-256(0x00 || data)`, `SHA-256(0x01 || left || right)`), the RFC 9162
//! §2.1.3.2 inclusion-proof verification, and reference builders ([`root`],
//! [`inclusion_proof`]) that compute a tree head and audit path from a full list
//! of leaves, so tests in any crate can build their own logs.
//!
//! Must never: accept a proof for an index outside the tree, a proof of the wrong
//! length, or a proof whose computed root differs from the stated one; never
//! compare roots in any way other than exact byte equality.

use sha2::{Digest as _, Sha256};

use crate::error::{FormatError, Result};

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Number of hashes an inclusion proof for `leaf_index` in a tree of `tree_size`
/// leaves must have. Correct for every `u64` pair with `leaf_index < tree_size`;
/// for any other pair it returns 0 (no proof can be valid there, and
/// [`root_from_inclusion_proof`] refuses the index first).
pub fn inclusion_proof_len(leaf_index: u64, tree_size: u64) -> usize {
    if leaf_index >= tree_size {
        return 0;
    }
    let last = tree_size - 1;
    // Levels where the paths to `leaf_index` and to the last leaf diverge
    // (0..=64; 64 when the index and the last leaf differ in the top bit,
    // which needs a tree of more than 2^63 leaves)...
    let inner = u64::BITS - (leaf_index ^ last).leading_zeros();
    // ...plus the right-border levels above them, which consist of complete
    // subtrees. Shifting a u64 by 64 overflows, and nothing is left above then.
    let border = leaf_index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies that `leaf_hash` is the leaf at `leaf_index` of the tree of
/// `tree_size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// Errors: [`FormatError::InclusionProof`] when the index is not inside the tree
/// or the proof has the wrong number of hashes, [`FormatError::RootMismatch`]
/// when the computed root differs from `root`.
///
/// `tree_size` is bound to the tree only through `root`: a proof for leaf 0 of
/// a 3-leaf tree also "verifies" as leaf 0 of a 4-leaf tree *with the 3-leaf
/// root*. Take `(tree_size, root)` together from one authenticated tree head
/// (a signed checkpoint), never from separate sources.
pub fn verify_inclusion(
    leaf_hash: &[u8; 32],
    leaf_index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> Result<()> {
    let computed = root_from_inclusion_proof(leaf_hash, leaf_index, tree_size, proof)?;
    if &computed != root {
        return Err(FormatError::RootMismatch {
            expected: hex::encode(root),
            computed: hex::encode(computed),
        });
    }
    Ok(())
}

/// The root implied by a leaf hash and its audit path (RFC 9162 §2.1.3.2 steps 1–6).
pub fn root_from_inclusion_proof(
    leaf_hash: &[u8; 32],
    leaf_index: u64,
    tree_size: u64,
    proof: &[[u8; 32]],
) -> Result<[u8; 32]> {
    if leaf_index >= tree_size {
        return Err(FormatError::InclusionProof {
            reason: format!("leaf index {leaf_index} is not inside a tree of size {tree_size}"),
        });
    }
    let expected_len = inclusion_proof_len(leaf_index, tree_size);
    if proof.len() != expected_len {
        return Err(FormatError::InclusionProof {
            reason: format!(
                "proof has {} hashes, but leaf index {leaf_index} in a tree of size {tree_size} needs exactly {expected_len}",
                proof.len()
            ),
        });
    }

    let mut fn_ = leaf_index;
    let mut sn = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            // Unreachable after the length check; kept as the RFC's step 5.a.
            return Err(FormatError::InclusionProof {
                reason: "proof is longer than the path to the root".to_owned(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(FormatError::InclusionProof {
            reason: "proof is shorter than the path to the root".to_owned(),
        });
    }
    Ok(r)
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Merkle Tree Hash (RFC 6962 §2.1) of already leaf-hashed entries.
/// The empty tree hashes to `SHA-256("")`.
pub fn root_from_leaf_hashes(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// Merkle Tree Hash (RFC 6962 §2.1) of the given leaf *data* (test-vector builder).
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> [u8; 32] {
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    root_from_leaf_hashes(&hashes)
}

/// Audit path (RFC 6962 §2.1.1) for `index` over already leaf-hashed entries.
pub fn inclusion_proof_from_leaf_hashes(leaves: &[[u8; 32]], index: usize) -> Result<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return Err(FormatError::InclusionProof {
            reason: format!("leaf index {index} is not inside a tree of size {}", leaves.len()),
        });
    }
    fn path(leaves: &[[u8; 32]], m: usize, out: &mut Vec<[u8; 32]>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(&leaves[..k], m, out);
            out.push(root_from_leaf_hashes(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(root_from_leaf_hashes(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    path(leaves, index, &mut out);
    Ok(out)
}

/// Audit path (RFC 6962 §2.1.1) for `index` over the given leaf *data*
/// (test-vector builder). Hashes are ordered from the leaf upwards, as Rekor sends them.
pub fn inclusion_proof<T: AsRef<[u8]>>(leaves: &[T], index: usize) -> Result<Vec<[u8; 32]>> {
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    inclusion_proof_from_leaf_hashes(&hashes, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_len_matches_builder() {
        for size in 1..=40usize {
            let leaves: Vec<Vec<u8>> = (0..size).map(|i| vec![i as u8]).collect();
            for i in 0..size {
                assert_eq!(
                    inclusion_proof(&leaves, i).unwrap().len(),
                    inclusion_proof_len(i as u64, size as u64),
                    "size {size} index {i}"
                );
            }
        }
    }

    /// Independent model of the audit path (RFC 6962 §2.1.1 recursion) in
    /// u128, so no step of it can overflow for a u64 tree size: the number of
    /// hashes, and the root they lead to from `leaf` (hashes from the leaf upwards).
    fn model_root(leaf: [u8; 32], m: u128, n: u128, proof: &[[u8; 32]]) -> Option<[u8; 32]> {
        if n == 1 {
            return proof.is_empty().then_some(leaf);
        }
        let (top, rest) = proof.split_last()?;
        let k = 1u128 << (127 - (n - 1).leading_zeros()); // largest power of two < n
        if m < k {
            Some(node_hash(&model_root(leaf, m, k, rest)?, top))
        } else {
            Some(node_hash(top, &model_root(leaf, m - k, n - k, rest)?))
        }
    }

    fn model_len(m: u128, n: u128) -> usize {
        if n <= 1 {
            return 0;
        }
        let k = 1u128 << (127 - (n - 1).leading_zeros());
        1 + if m < k {
            model_len(m, k)
        } else {
            model_len(m - k, n - k)
        }
    }

    /// Tree sizes spread over every magnitude of u64, with the top ranges
    /// (above 2^63, and u64::MAX itself) drawn often.
    fn size_and_index() -> impl proptest::strategy::Strategy<Value = (u64, u64)> {
        use proptest::prelude::*;
        prop_oneof![
            1u64..=u64::MAX,
            (1u64 << 63)..=u64::MAX,
            (0u32..64).prop_flat_map(|b| (1u64 << b)..=(1u64 << b).saturating_mul(2)),
            Just(u64::MAX),
            Just((1u64 << 63) + 1),
        ]
        .prop_flat_map(|size| {
            prop_oneof![0..size, Just(size - 1), Just(0), Just(size / 2)].prop_map(move |i| (size, i))
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn proof_len_matches_model_for_every_u64((size, index) in size_and_index()) {
            proptest::prop_assert_eq!(
                inclusion_proof_len(index, size),
                model_len(u128::from(index), u128::from(size))
            );
        }

        #[test]
        fn root_from_proof_matches_model_for_every_u64(
            (size, index) in size_and_index(),
            seed in proptest::prelude::any::<[u8; 32]>(),
        ) {
            let len = model_len(u128::from(index), u128::from(size));
            let proof: Vec<[u8; 32]> =
                (0..len).map(|i| node_hash(&seed, &[i as u8; 32])).collect();
            let leaf = leaf_hash(&seed);
            let want = model_root(leaf, u128::from(index), u128::from(size), &proof).unwrap();
            proptest::prop_assert_eq!(root_from_inclusion_proof(&leaf, index, size, &proof).unwrap(), want);
            // One hash fewer or more is refused, never a panic.
            proptest::prop_assert!(root_from_inclusion_proof(&leaf, index, size, &proof[..len.saturating_sub(1)]).is_err() || len == 0);
            let mut longer = proof.clone();
            longer.push(seed);
            proptest::prop_assert!(root_from_inclusion_proof(&leaf, index, size, &longer).is_err());
        }
    }

    #[test]
    fn proof_len_above_two_to_the_63() {
        // The last leaf of the largest tree sits on the right border: one hash
        // per complete subtree to its left (popcount of 2^64 - 2).
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert_eq!(inclusion_proof_len(1 << 63, (1 << 63) + 1), 1);
        assert_eq!(inclusion_proof_len(0, (1 << 63) + 1), 64);
        assert_eq!(inclusion_proof_len(5, 5), 0);
        assert_eq!(inclusion_proof_len(0, 0), 0);
    }

    #[test]
    fn empty_tree_root() {
        assert_eq!(
            hex::encode(root::<&[u8]>(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
