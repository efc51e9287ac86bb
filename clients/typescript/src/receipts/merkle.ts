/**
 * RFC 9162 (Certificate Transparency 2.0) Merkle tree hashes and inclusion proofs, ported from
 * the service's executor/receipts/merkle.py. Indices are BigInt inside: sizes go past 2^53.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export const HASH_SIZE = 32;

/** SHA-256(0x00 ‖ data): the hash of a leaf (RFC 9162 §2.1.1). */
export function leafHash(data: Uint8Array): Uint8Array {
  return createHash("sha256").update(Uint8Array.of(0)).update(data).digest();
}

/** SHA-256(0x01 ‖ left ‖ right): the hash of an interior node (RFC 9162 §2.1.1). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return createHash("sha256").update(Uint8Array.of(1)).update(left).update(right).digest();
}

/** Whether `proof` shows leaf hash `leaf` at `index` in the tree of `size` leaves with this root (RFC 9162 §2.1.3.2). */
export function verifyInclusion(leaf: Uint8Array, index: number | bigint, size: number | bigint,
                                proof: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!isCount(index) || !isCount(size) || !isHash(leaf) || !isHash(root) || !proof.every(isHash)) return false;
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) return false;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while (fn !== 0n && (fn & 1n) === 0n) { // "until either LSB(fn) is set or fn is 0"
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && timingSafeEqual(r, root);
}

function isCount(value: number | bigint): boolean {
  return typeof value === "bigint" ? value >= 0n : Number.isSafeInteger(value) && value >= 0;
}

function isHash(value: Uint8Array): boolean {
  return value instanceof Uint8Array && value.length === HASH_SIZE;
}
