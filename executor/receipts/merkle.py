"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing for a log stored as complete subtrees.

The log keeps every complete, aligned subtree hash as a node (level, index):
level 0 holds leaf hashes and node (L, i) covers leaves [i·2^L, (i+1)·2^L).
It also keeps the frontier of a tree of n leaves: the hashes of the complete
subtrees that make it up, largest first, one per set bit of n.

Proofs are computed in two steps so the caller can fetch everything in one
query: a plan names the leaf ranges whose hashes form the proof (RFC 9162
§2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF), and `assemble` folds the stored nodes
of each range into its hash. Verification follows §2.1.3.2 and §2.1.4.2 to the
letter. Everything is iterative: sizes up to 2^64 cost ~64 steps.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index): covers leaves [index·2^level, (index+1)·2^level)


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf entry: SHA-256(0x00 ‖ data) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def append(frontier: Sequence[bytes], size: int, leaf: bytes) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Add the leaf hash `leaf` to a tree of `size` leaves: the new frontier and every node it completes.

    The completed nodes, as (level, index, hash), start with the leaf itself at (0, size).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if len(frontier) != size.bit_count():
        raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes, not {len(frontier)}")
    if not _is_hash(leaf) or not _are_hashes(frontier):
        raise ValueError(f"the leaf and the frontier must be {HASH_SIZE}-byte hashes")
    new_frontier = list(frontier)
    completed = [(0, size, leaf)]
    acc, level = leaf, 0
    # Each trailing 1 bit of size is a complete subtree of that level the new leaf now pairs with.
    while (size >> level) & 1:
        acc = node_hash(new_frontier.pop(), acc)
        level += 1
        completed.append((level, size >> level, acc))
    new_frontier.append(acc)
    return new_frontier, completed


def root(frontier: Sequence[bytes]) -> bytes:
    """The tree hash (MTH) of a tree from its frontier, largest subtree first; EMPTY_ROOT if empty."""
    return _fold(frontier)


def blocks(start: int, end: int) -> list[Node]:
    """The leaf range [start, end) cut into maximal aligned complete subtrees, left to right."""
    if not 0 <= start <= end:
        raise ValueError(f"need 0 <= start <= end, not [{start}, {end})")
    found: list[Node] = []
    while start < end:
        # The largest level that start is aligned to and that still fits before end.
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        found.append((level, start >> level))
        start += 1 << level
    return found


@dataclass(frozen=True)
class ProofPlan:
    """The leaf ranges [start, end) whose tree hashes are a proof's elements, in proof order."""

    ranges: tuple[tuple[int, int], ...]

    @property
    def nodes(self) -> frozenset[Node]:
        """Every stored node (level, index) that `assemble` needs."""
        return frozenset(node for start, end in self.ranges for node in blocks(start, end))

    def assemble(self, lookup: Mapping[Node, bytes]) -> list[bytes]:
        """The proof, from stored node hashes; raises MissingNode (a KeyError) for the first node absent."""
        proof = []
        for start, end in self.ranges:
            hashes = []
            for node in blocks(start, end):
                if node not in lookup:
                    raise MissingNode(node, (start, end))
                hashes.append(lookup[node])
            proof.append(_fold(hashes))
        return proof


class MissingNode(KeyError):
    """A node a proof needs is not in the lookup given to `ProofPlan.assemble`."""

    def __init__(self, node: Node, leaves: tuple[int, int]) -> None:
        super().__init__(node)
        self.node = node
        self.leaves = leaves

    def __str__(self) -> str:  # KeyError's own would print a repr of the key only
        level, index = self.node
        return f"(level {level}, index {index}), needed for leaves [{self.leaves[0]}, {self.leaves[1]})"


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The plan of PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"need 0 <= index < size, not index {index} for size {size}")
    lo, hi = 0, size
    top_down: list[tuple[int, int]] = []
    while hi - lo > 1:
        split = lo + _largest_power_below(hi - lo)
        if index < split:
            top_down.append((split, hi))
            hi = split
        else:
            top_down.append((lo, split))
            lo = split
    return ProofPlan(tuple(reversed(top_down)))


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """The plan of PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1); empty when the sizes are equal."""
    if old_size == 0:
        raise ValueError("old_size 0: every tree extends the empty tree, there is nothing to prove")
    if not 0 < old_size <= new_size:
        raise ValueError(f"need 0 < old_size <= new_size, not {old_size} and {new_size}")
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one element after the sub-proof below it.
    lo, hi, whole_old_tree = 0, new_size, True
    top_down: list[tuple[int, int]] = []
    while old_size != hi:
        split = lo + _largest_power_below(hi - lo)
        if old_size <= split:
            top_down.append((split, hi))
            hi = split
        else:
            top_down.append((lo, split))
            lo, whole_old_tree = split, False
    # SUBPROOF(m, D[m], b): nothing if D[lo:m] is the whole old tree (the verifier has its root), else its hash.
    first = [] if whole_old_tree else [(lo, hi)]
    return ProofPlan(tuple(first + list(reversed(top_down))))


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows leaf hash `leaf` at `index` in the tree of `size` with this root (RFC 9162 §2.1.3.2)."""
    if not (_is_count(index) and _is_count(size) and _is_hash(leaf) and _is_hash(root) and _are_hashes(proof)):
        return False
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # "until either LSB(fn) is set or fn is 0"
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> bool:
    """Whether `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root) (RFC 9162 §2.1.4.2).

    Equal sizes need an empty proof and equal roots; old_size 0 is refused like the plan (nothing to prove).
    """
    if not (_is_count(old_size) and _is_count(new_size) and _is_hash(old_root) and _is_hash(new_root)
            and _are_hashes(proof)):
        return False
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    path = list(proof)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:  # a power of 2: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:  # "until either LSB(fn) is set or fn is 0"
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Right-to-left fold of subtree hashes, largest (leftmost) first: the MTH of their concatenated leaves."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def _largest_power_below(n: int) -> int:
    """The largest power of 2 strictly less than n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _are_hashes(proof: object) -> bool:
    return isinstance(proof, Sequence) and not isinstance(proof, (bytes, str)) and all(map(_is_hash, proof))
