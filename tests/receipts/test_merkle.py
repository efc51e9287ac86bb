"""RFC 9162 Merkle hashing, checked against a reference written here from the RFC's recursive
definitions (MTH, PATH, PROOF/SUBPROOF over an explicit list of leaves) and against the
Certificate Transparency test vectors (transparency-dev/merkle testonly/constants.go and
proof/verify_test.go, the same data as the RFC 6962 reference tests)."""

from __future__ import annotations

import hashlib
import itertools
from functools import cache

import pytest

from executor.receipts.merkle import (
    EMPTY_ROOT,
    MissingNode,
    ProofPlan,
    append,
    blocks,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# ── The reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1, literally, with its own hashing ──


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    n = len(leaves)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + leaves[0])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: tuple[bytes, ...], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, leaves[:k], whole) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def ref_nodes(leaves: tuple[bytes, ...]) -> dict[tuple[int, int], bytes]:
    """Every complete aligned subtree of the tree, as the log stores them."""
    nodes = {}
    level = 0
    while (1 << level) <= len(leaves):
        width = 1 << level
        for index in range(len(leaves) // width):
            nodes[(level, index)] = ref_mth(leaves[index * width:(index + 1) * width])
        level += 1
    return nodes


# ── Data ──

LEAVES = tuple(f"leaf {i}".encode() for i in range(70))

CT_LEAVES = tuple(bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
))
CT_ROOTS = [bytes.fromhex(h) for h in (  # by tree size 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
CT_NODES = {  # every complete subtree of the 8-leaf tree, by (level, index)
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (leaf index, tree size, proof), from verify_test.go (whose leaf numbers start at 1).
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (old size, new size, proof), from verify_test.go.
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def build(leaves: tuple[bytes, ...]) -> tuple[list[list[bytes]], dict[tuple[int, int], bytes]]:
    """Append every leaf; the frontier after each size (0..n) and every node the appends reported."""
    frontier: list[bytes] = []
    frontiers = [frontier]
    nodes: dict[tuple[int, int], bytes] = {}
    for size, data in enumerate(leaves):
        frontier, completed = append(frontier, size, leaf_hash(data))
        frontiers.append(frontier)
        for level, index, digest in completed:
            assert (level, index) not in nodes, "a node was completed twice"
            nodes[(level, index)] = digest
    return frontiers, nodes


FRONTIERS, NODES = build(LEAVES)


def flipped(proof: list[bytes], position: int) -> list[bytes]:
    element = bytearray(proof[position])
    element[0] ^= 8
    return [*proof[:position], bytes(element), *proof[position + 1:]]


def edited_proofs(proof: list[bytes], extra: bytes) -> list[list[bytes]]:
    """The proof with one element flipped, removed, added or duplicated."""
    edits = [flipped(proof, i) for i in range(len(proof))]
    edits += [proof + [extra], [extra] + proof, proof + [SOME_HASH], [SOME_HASH] + proof]
    if proof:
        edits += [proof[:-1], proof[1:], [proof[0]] + proof, proof + [proof[-1]]]
        edits += [proof[:i] + [SOME_HASH] + proof[i:] for i in range(1, len(proof))]
    return edits


# ── Hashing primitives and the CT vectors ──


def test_hash_primitives_are_rfc_9162s() -> None:
    assert CT_ROOTS[0] == EMPTY_ROOT
    assert leaf_hash(b"") == CT_ROOTS[1]
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")) == CT_ROOTS[2]
    assert leaf_hash(b"a") != node_hash(b"", b"a")  # domain separation: 0x00 vs 0x01


def test_ct_vectors_roots_frontiers_and_nodes() -> None:
    frontiers, nodes = build(CT_LEAVES)
    assert [root(f) for f in frontiers] == CT_ROOTS
    assert nodes == {key: bytes.fromhex(value) for key, value in CT_NODES.items()}
    # The compact ranges of testonly.CompactTrees(): one hash per set bit of the size, largest first.
    expected = {3: [(1, 0), (0, 2)], 6: [(2, 0), (1, 2)], 7: [(2, 0), (1, 2), (0, 6)], 8: [(3, 0)]}
    for size, frontier_nodes in expected.items():
        assert frontiers[size] == [bytes.fromhex(CT_NODES[n]) for n in frontier_nodes]


@pytest.mark.parametrize("index, size, proof", CT_INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    _, nodes = build(CT_LEAVES[:size])
    assert inclusion_plan(index, size).assemble(nodes) == expected
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize("old, new, proof", CT_CONSISTENCY)
def test_ct_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    _, nodes = build(CT_LEAVES[:new])
    assert consistency_plan(old, new).assemble(nodes) == expected
    assert verify_consistency(old, new, expected, CT_ROOTS[old], CT_ROOTS[new])


# ── append / root against the reference ──


@pytest.mark.parametrize("size", range(71))
def test_append_builds_the_reference_tree(size: int) -> None:
    frontier = FRONTIERS[size]
    assert root(frontier) == ref_mth(LEAVES[:size])
    assert len(frontier) == size.bit_count()
    # The frontier is the complete subtrees of the size's binary decomposition, largest first.
    nodes = ref_nodes(LEAVES[:size])
    assert frontier == [nodes[node] for node in blocks(0, size)]


def test_append_reports_every_complete_subtree_once() -> None:
    assert ref_nodes(LEAVES) == NODES  # build() also asserted no node came twice


def test_append_refuses_a_frontier_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="3 leaves has 2 frontier hashes, not 1"):
        append(FRONTIERS[2], 3, leaf_hash(b"x"))
    with pytest.raises(ValueError, match="32-byte"):
        append([], 0, b"short")
    with pytest.raises(ValueError, match=">= 0"):
        append([], -1, leaf_hash(b"x"))


# ── blocks ──


@pytest.mark.parametrize("end", range(71))
def test_blocks_are_maximal_aligned_complete_subtrees(end: int) -> None:
    for start in range(end + 1):
        found = blocks(start, end)
        position = start
        for level, index in found:
            assert index << level == position, "blocks must be contiguous and aligned"
            position += 1 << level
        assert position == end
        for (level_a, index_a), (level_b, _) in itertools.pairwise(found):
            # Two equal neighbours that start on an even index would merge into one larger block.
            assert not (level_a == level_b and index_a % 2 == 0)


def test_blocks_fold_to_the_mth_of_every_range_a_proof_uses() -> None:
    checked = 0
    for size in range(1, 71):
        plans = [inclusion_plan(i, size) for i in range(size)]
        plans += [consistency_plan(old, size) for old in range(1, size + 1)]
        for start, end in {r for plan in plans for r in plan.ranges}:
            folded = ProofPlan(((start, end),)).assemble(NODES)
            assert folded == [ref_mth(LEAVES[start:end])], (start, end)
            checked += 1
    assert checked > 1000


def test_blocks_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError):
        blocks(5, 4)
    assert blocks(7, 7) == []
    assert blocks(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert blocks(3, 13) == [(0, 3), (2, 1), (2, 2), (0, 12)]


# ── Inclusion ──


def inclusion_is_genuine(leaf: bytes, index: int, size: int, proof: list[bytes], root_hash: bytes) -> bool:
    """The oracle: the probe is exactly a true (leaf, index, size, proof, root) of the reference log."""
    return (0 <= index < size <= len(LEAVES) and leaf == leaf_hash(LEAVES[index])
            and proof == ref_path(index, LEAVES[:size]) and root_hash == ref_mth(LEAVES[:size]))


@pytest.mark.parametrize("size", range(1, 71))
def test_inclusion_plans_proofs_and_verification(size: int) -> None:
    root_hash = ref_mth(LEAVES[:size])
    for index in range(size):
        leaf = leaf_hash(LEAVES[index])
        proof = inclusion_plan(index, size).assemble(NODES)
        assert proof == ref_path(index, LEAVES[:size]), (index, size)
        assert verify_inclusion(leaf, index, size, proof, root_hash)

        probes = [(leaf, index, size, p, root_hash) for p in edited_proofs(proof, root_hash)]
        for other in {index - 1, index + 1, index ^ 2, index ^ 1, 0, size - 1}:
            probes.append((leaf, other, size, proof, root_hash))  # the same leaf claimed elsewhere
            if 0 <= other < size:
                probes.append((leaf_hash(LEAVES[other]), index, size, proof, root_hash))  # another leaf
        for other_size in {size - 1, size + 1, size * 2, size // 2, index + 1}:
            if 0 < other_size <= len(LEAVES):  # the proof against another tree, with that tree's own root
                probes.append((leaf, index, other_size, proof, ref_mth(LEAVES[:other_size])))
        probes += [(leaf, index, size, proof, wrong) for wrong in (EMPTY_ROOT, SOME_HASH, leaf)]
        for probe in probes:
            assert verify_inclusion(*probe) == inclusion_is_genuine(*probe), (index, size, probe[1:3])
        # With the real root but a claimed size whose tree is taller than the proof (RFC step 5: sn must reach 0).
        assert not verify_inclusion(leaf, index, size + (1 << (size.bit_length() + 1)), proof, root_hash)


@pytest.mark.parametrize("size", [n for n in range(2, 71) if n.bit_count() > 1])  # not a single subtree
def test_a_proof_taller_than_the_claimed_tree_is_refused(size: int) -> None:
    # A leaf of the rightmost complete subtree, claimed at its place in that subtree alone: the proof's
    # first elements rebuild the subtree, the rest would fold on as left siblings up to the real root.
    # RFC 9162 §2.1.3.2 step 4a (sn is 0 with elements left) is what refuses it.
    level, block = blocks(0, size)[-1]
    offset = block << level
    root_hash = ref_mth(LEAVES[:size])
    for index in range(offset, size):
        proof = ref_path(index, LEAVES[:size])
        assert len(proof) > level
        assert not verify_inclusion(leaf_hash(LEAVES[index]), index - offset, 1 << level, proof, root_hash)


def test_inclusion_plan_refuses_bad_arguments() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError, match="0 <= index < size"):
            inclusion_plan(index, size)
    assert inclusion_plan(0, 1).ranges == ()


def test_verify_inclusion_never_raises_on_garbage() -> None:
    leaf = leaf_hash(LEAVES[0])
    root_hash = ref_mth(LEAVES[:2])
    proof = ref_path(0, LEAVES[:2])
    assert verify_inclusion(leaf, 0, 2, proof, root_hash)
    garbage = [
        (leaf, 0, 0, [], EMPTY_ROOT), (leaf, -1, 2, proof, root_hash), (leaf, 2, 2, proof, root_hash),
        (leaf, 0, 2, [b""], root_hash), (leaf, 0, 2, [proof[0][:31]], root_hash), (leaf, 0, 2, proof, b""),
        (b"", 0, 2, proof, root_hash), (leaf, 0, 2, [None], root_hash), (leaf, 0, 2, proof[0], root_hash),
        (leaf, True, 2, proof, root_hash), (leaf, 0, 2.0, proof, root_hash), (None, 0, 2, proof, root_hash),
        (leaf, 0, 1, [], leaf + b"\x00"),
    ]
    for probe in garbage:
        assert verify_inclusion(*probe) is False, probe[1:3]
    assert verify_inclusion(leaf, 0, 1, [], leaf)  # a one-leaf tree's root is its leaf hash


# ── Consistency ──


def consistency_is_genuine(old: int, new: int, proof: list[bytes], old_root: bytes, new_root: bytes) -> bool:
    """The oracle: the probe is exactly a true (old, new, proof, old root, new root) of the reference log."""
    return (0 < old <= new <= len(LEAVES) and proof == ref_proof(old, LEAVES[:new])
            and old_root == ref_mth(LEAVES[:old]) and new_root == ref_mth(LEAVES[:new]))


@pytest.mark.parametrize("new", range(1, 41))
def test_consistency_plans_proofs_and_verification(new: int) -> None:
    new_root = ref_mth(LEAVES[:new])
    for old in range(1, new + 1):
        old_root = ref_mth(LEAVES[:old])
        proof = consistency_plan(old, new).assemble(NODES)
        assert proof == ref_proof(old, LEAVES[:new]), (old, new)
        assert verify_consistency(old, new, proof, old_root, new_root)

        probes = [(old, new, p, old_root, new_root) for p in edited_proofs(proof, old_root)]
        probes += [(old, new, [], old_root, new_root)]
        probes += [(old, new, proof, wrong, new_root) for wrong in (EMPTY_ROOT, SOME_HASH, new_root)]
        probes += [(old, new, proof, old_root, wrong) for wrong in (EMPTY_ROOT, SOME_HASH, old_root)]
        probes += [(old, new, proof, new_root, old_root)]  # swapped
        for other in {old - 1, old + 1, old ^ 2, old * 2, old // 2}:
            if 0 < other <= len(LEAVES):
                probes.append((other, new, proof, ref_mth(LEAVES[:other]), new_root))
        for other in {new - 1, new + 1, new * 2, new // 2}:
            if 0 < other <= len(LEAVES):
                probes.append((old, other, proof, old_root, ref_mth(LEAVES[:other])))
        for probe in probes:
            assert verify_consistency(*probe) == consistency_is_genuine(*probe), (old, new, probe[:2])
        # With the real roots but a claimed new size whose tree is taller than the proof (step 7: sn must be 0).
        assert not verify_consistency(old, new + (1 << (new.bit_length() + 1)), proof, old_root, new_root)


def test_consistency_plan_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nothing to prove"):
        consistency_plan(0, 5)
    for old, new in [(6, 5), (-1, 5), (1, 0)]:
        with pytest.raises(ValueError, match="0 < old_size <= new_size"):
            consistency_plan(old, new)
    assert consistency_plan(5, 5).ranges == ()


def test_verify_consistency_edge_cases_and_garbage() -> None:
    r5, r8 = ref_mth(LEAVES[:5]), ref_mth(LEAVES[:8])
    proof = ref_proof(5, LEAVES[:8])
    assert verify_consistency(5, 5, [], r5, r5)
    assert not verify_consistency(5, 5, [], r5, r8)
    assert not verify_consistency(5, 5, [r5], r5, r5)
    assert not verify_consistency(0, 8, [], EMPTY_ROOT, r8)  # refused like consistency_plan(0, n)
    assert not verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    garbage = [
        (8, 5, proof, r5, r8), (-5, 8, proof, r5, r8), (5, 8, proof + [b""], r5, r8), (5, 8, proof, r5[:31], r8),
        (5, 8, [None], r5, r8), (5, 8, b"".join(proof), r5, r8), (5.0, 8, proof, r5, r8), (5, 8, proof, r5, None),
    ]
    for probe in garbage:
        assert verify_consistency(*probe) is False, probe[:2]


# ── Plans for a big log ──


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 + 1, 2**40 - 1, 2**63 + 12345])
def test_plans_for_big_trees_stay_small(size: int) -> None:
    bound = 2 * size.bit_length()
    samples = {0, 1, size // 3, size // 2, size - 2, size - 1, (1 << (size.bit_length() - 1)) - 1}
    plans = [inclusion_plan(i, size) for i in samples if 0 <= i < size]
    plans += [consistency_plan(old, size) for old in samples | {size} if 0 < old <= size]
    for plan in plans:
        assert len(plan.ranges) <= size.bit_length() + 1  # a consistency proof may add the old subtree
        assert len(plan.nodes) <= min(bound, 2 * 64)
        for level, index in plan.nodes:  # every node is a complete subtree that exists at this size
            assert (index + 1) << level <= size
    assert all(len(p.nodes) <= 64 for p in plans if size == 1_000_000)


def test_assemble_names_the_missing_node() -> None:
    plan = inclusion_plan(5, 8)
    lookup = {node: NODES[node] for node in plan.nodes if node != (2, 0)}
    with pytest.raises(KeyError) as caught:
        plan.assemble(lookup)
    assert isinstance(caught.value, MissingNode) and caught.value.node == (2, 0)
    assert str(caught.value) == "(level 2, index 0), needed for leaves [0, 4)"

