/**
 * Word counting over raw UTF-8 bytes, for wordcount's block mapper: words are found, hashed and
 * counted in one pass without creating a string per word, which is what bounds a count in a
 * `Map<string, number>` (about a third of this speed). A word is what `forEachWord` finds in the
 * decoded text: a maximal run of Unicode letters. Malformed UTF-8 decodes to U+FFFD, which is
 * not a letter, so a malformed byte ends a word here as it does there.
 */
import { BMP_LETTERS, isAstralLetter } from "./words.js";

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const EMPTY = -1;

/** Per byte: 1 for an ASCII letter, 2 for the lead byte of a multi-byte sequence, else 0. */
const BYTE_CLASS = new Uint8Array(256);
for (let b = 0; b < 0x80; b++) BYTE_CLASS[b] = BMP_LETTERS[b]!;
for (let b = 0xc2; b <= 0xf4; b++) BYTE_CLASS[b] = 2;

const isContinuation = (byte: number): boolean => (byte & 0xc0) === 0x80;

/**
 * The length in bytes of the multi-byte letter whose lead byte is at `i`, or 0 when the
 * sequence is malformed (as the WHATWG decoder judges it) or not a letter.
 */
function multiByteLetter(bytes: Uint8Array, i: number, end: number): number {
  const lead = bytes[i]!;
  if (lead < 0xe0) {
    if (i + 1 >= end || !isContinuation(bytes[i + 1]!)) return 0;
    return BMP_LETTERS[((lead & 0x1f) << 6) | (bytes[i + 1]! & 0x3f)] ? 2 : 0;
  }
  if (lead < 0xf0) {
    if (i + 2 >= end) return 0;
    const b1 = bytes[i + 1]!;
    const low = lead === 0xe0 ? 0xa0 : 0x80; // no overlong forms
    const high = lead === 0xed ? 0x9f : 0xbf; // no surrogates
    if (b1 < low || b1 > high || !isContinuation(bytes[i + 2]!)) return 0;
    return BMP_LETTERS[((lead & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (bytes[i + 2]! & 0x3f)] ? 3 : 0;
  }
  if (i + 3 >= end) return 0;
  const b1 = bytes[i + 1]!;
  const low = lead === 0xf0 ? 0x90 : 0x80;
  const high = lead === 0xf4 ? 0x8f : 0xbf; // nothing past U+10FFFF
  if (b1 < low || b1 > high || !isContinuation(bytes[i + 2]!) || !isContinuation(bytes[i + 3]!)) return 0;
  const point =
    ((lead & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((bytes[i + 2]! & 0x3f) << 6) | (bytes[i + 3]! & 0x3f);
  return isAstralLetter(point) ? 4 : 0;
}

/**
 * Counts of words, keyed by their UTF-8 bytes: an open-addressing hash table over typed arrays,
 * with the keys' bytes in one pool. `bytes` estimates what it holds, for flushing by a budget.
 */
export class WordCounts {
  private slots = new Int32Array(1 << 8).fill(EMPTY); // entry index per slot
  private slotHashes = new Int32Array(1 << 8);
  private keyStarts = new Int32Array(1 << 7);
  private keyLengths = new Int32Array(1 << 7);
  private counts = new Float64Array(1 << 7);
  private pool = Buffer.allocUnsafe(1 << 10);
  private poolUsed = 0;
  /** Distinct words held. */
  size = 0;

  get bytes(): number {
    return this.slots.byteLength * 2 + this.keyStarts.byteLength * 4 + this.pool.length;
  }

  /** Counts every word of `block`. */
  addWords(block: Uint8Array): void {
    const end = block.length;
    let i = 0;
    while (i < end) {
      let byte = block[i]!;
      if (BYTE_CLASS[byte] === 0) {
        i++;
        continue;
      }
      const start = i;
      let hash = FNV_OFFSET;
      for (;;) {
        const kind = BYTE_CLASS[byte]!;
        if (kind === 1) {
          hash = Math.imul(hash ^ byte, FNV_PRIME);
          i++;
        } else {
          const length = kind === 0 ? 0 : multiByteLetter(block, i, end);
          if (length === 0) break;
          for (const stop = i + length; i < stop; i++) hash = Math.imul(hash ^ block[i]!, FNV_PRIME);
        }
        if (i >= end) break;
        byte = block[i]!;
      }
      if (i === start)
        i++; // a lead byte that starts no letter
      else this.increment(block, start, i, hash);
    }
  }

  private increment(block: Uint8Array, start: number, end: number, hash: number): void {
    const { slots, slotHashes, keyLengths, keyStarts, pool } = this;
    const length = end - start;
    const mask = slots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = slots[slot]!;
      if (entry === EMPTY) {
        this.insert(slot, hash, block, start, end);
        return;
      }
      if (slotHashes[slot] === hash && keyLengths[entry] === length) {
        const keyStart = keyStarts[entry]!;
        let k = 0;
        while (k < length && pool[keyStart + k] === block[start + k]) k++;
        if (k === length) {
          this.counts[entry]!++;
          return;
        }
      }
    }
  }

  private insert(slot: number, hash: number, block: Uint8Array, start: number, end: number): void {
    const length = end - start;
    if (this.size === this.counts.length) {
      this.keyStarts = grownTo(this.keyStarts, new Int32Array(this.size * 2));
      this.keyLengths = grownTo(this.keyLengths, new Int32Array(this.size * 2));
      this.counts = grownTo(this.counts, new Float64Array(this.size * 2));
    }
    while (this.poolUsed + length > this.pool.length)
      this.pool = grownTo(this.pool, Buffer.allocUnsafe(this.pool.length * 2));
    this.pool.set(block.subarray(start, end), this.poolUsed);
    const entry = this.size++;
    this.keyStarts[entry] = this.poolUsed;
    this.keyLengths[entry] = length;
    this.counts[entry] = 1;
    this.poolUsed += length;
    this.slots[slot] = entry;
    this.slotHashes[slot] = hash;
    if (this.size * 2 > this.slots.length) this.rehash(); // keep the load at most one half
  }

  private rehash(): void {
    const slots = new Int32Array(this.slots.length * 2).fill(EMPTY);
    const hashes = new Int32Array(slots.length);
    const mask = slots.length - 1;
    for (let old = 0; old < this.slots.length; old++) {
      const entry = this.slots[old]!;
      if (entry === EMPTY) continue;
      let slot = this.slotHashes[old]! & mask;
      while (slots[slot] !== EMPTY) slot = (slot + 1) & mask;
      slots[slot] = entry;
      hashes[slot] = this.slotHashes[old]!;
    }
    this.slots = slots;
    this.slotHashes = hashes;
  }

  /** Calls `onWord` for each word and its count, in the order they were first seen. */
  forEach(onWord: (word: string, count: number) => void): void {
    for (let entry = 0; entry < this.size; entry++) {
      const start = this.keyStarts[entry]!;
      onWord(this.pool.toString("utf8", start, start + this.keyLengths[entry]!), this.counts[entry]!);
    }
  }

  /** Forgets every word, keeping the memory for reuse. */
  clear(): void {
    this.slots.fill(EMPTY);
    this.size = 0;
    this.poolUsed = 0;
  }
}

function grownTo<T extends Uint8Array | Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}
