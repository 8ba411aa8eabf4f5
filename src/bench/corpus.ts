/** A deterministic text corpus for benchmarks: words drawn from a Zipf distribution. */
import { closeSync, openSync, writeSync } from "node:fs";

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzéèüößñ";

/** `size` distinct words of 2 to 12 letters, a few capitalised. */
export function vocabulary(size: number, next: () => number): string[] {
  const words = new Set<string>();
  while (words.size < size) {
    const length = 2 + Math.floor(next() * next() * 11);
    let word = "";
    for (let i = 0; i < length; i++) word += LETTERS[Math.floor(next() * LETTERS.length)];
    if (next() < 0.1) word = word[0]!.toUpperCase() + word.slice(1);
    words.add(word);
  }
  return [...words];
}

/**
 * Writes about `bytes` bytes of lines of 4 to 16 words to `path`, drawing rank k of the
 * vocabulary with probability proportional to 1/k (Zipf, s = 1). Returns the bytes written.
 */
export function writeZipfCorpus(
  path: string,
  options: { bytes: number; vocabulary: number; seed: number },
): number {
  const next = random(options.seed);
  const words = vocabulary(options.vocabulary, next);
  const cdf = new Float64Array(words.length);
  let total = 0;
  for (let k = 0; k < words.length; k++) cdf[k] = total += 1 / (k + 1);
  const draw = (): string => {
    const target = next() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    return words[lo]!;
  };
  const fd = openSync(path, "w");
  let written = 0;
  try {
    while (written < options.bytes) {
      const lines: string[] = [];
      let chunk = 0;
      while (chunk < 1 << 20) {
        const count = 4 + Math.floor(next() * 13);
        const parts: string[] = [];
        for (let i = 0; i < count; i++) parts.push(draw());
        const line = parts.join(next() < 0.2 ? ", " : " ") + (next() < 0.3 ? "." : "");
        lines.push(line);
        chunk += Buffer.byteLength(line) + 1;
      }
      const data = Buffer.from(lines.join("\n") + "\n");
      writeSync(fd, data);
      written += data.length;
    }
  } finally {
    closeSync(fd);
  }
  return written;
}
