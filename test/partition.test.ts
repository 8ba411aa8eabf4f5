import { describe, expect, it } from "vitest";
import { fnv1a, hashPartition } from "../src/mr/partition.js";

/** FNV-1a the obvious way, over the encoded bytes. */
function reference(key: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(key, "utf8")) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash >>> 0;
}

describe("the partitioner", () => {
  it("is 32-bit FNV-1a over UTF-8, with the published test values", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
    expect(fnv1a("foobar")).toBe(0xbf9cf968);
  });

  it("encodes every kind of code point as UTF-8 does", () => {
    for (const key of [
      "straße",
      "東京",
      "Ærø",
      "😀 emoji",
      "mixed ascii and ελληνικά",
      "\u{10ffff}",
      "lone \ud800 surrogate",
    ]) {
      expect(fnv1a(key), key).toBe(reference(key));
    }
  });

  it("is stable: the same key goes to the same partition, whatever else is hashed", () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `key-${i}`);
    const first = keys.map((key) => hashPartition(key, 7));
    const again = [...keys]
      .reverse()
      .map((key) => hashPartition(key, 7))
      .reverse();
    expect(again).toEqual(first);
    expect(hashPartition("the", 10)).toBe(reference("the") % 10);
  });

  it("spreads keys over every partition", () => {
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[hashPartition(`word${i}`, 8)]!++;
    for (const count of counts) expect(count).toBeGreaterThan(800);
  });
});
