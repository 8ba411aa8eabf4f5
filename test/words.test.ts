/** Wordcount's two tokenizers: over decoded lines (map), and over bytes (the block mapper). */
import { describe, expect, it } from "vitest";
import { WordCounts } from "../src/mr/apps/wordCounts.js";
import { forEachWord } from "../src/mr/apps/words.js";
import { random } from "./helpers/corpus.js";

describe("the word tokenizer", () => {
  it("finds exactly the maximal runs of \\p{L}, astral letters and marks included", () => {
    const lines = [
      "Hello, world! it's 2024-ready",
      "straße Ünïcödé café naïve — 東京タワー Москва ελληνικά",
      "math 𝒜𝒷𝒸 and emoji 😀 between, digits9in9words, under_score",
      "e\u0301 combining marks split words (as \\p{L}+ does)",
      "\ud800 lone surrogates \udc00 are not letters",
      "",
    ];
    for (const line of lines) {
      const words: string[] = [];
      forEachWord(line, (word) => words.push(word));
      expect(words, line).toEqual(line.match(/\p{L}+/gu) ?? []);
    }
  });
});

describe("the byte word counter", () => {
  it("counts what forEachWord finds in the decoded text, malformed UTF-8 included", () => {
    const pieces = [
      ..."abcXYZ",
      " ",
      ",",
      "\n",
      "\r\n",
      "9",
      "é",
      "ß",
      "東京",
      "Ω",
      "𝒜",
      "—",
      "😀",
      "\u0301",
    ].map((text) => Buffer.from(text));
    const malformed = [
      [0x80],
      [0xbf],
      [0xc0, 0x80],
      [0xc3],
      [0xe0, 0x80, 0x80],
      [0xed, 0xa0, 0x80],
      [0xe6, 0x9d],
    ];
    malformed.push([0xf0, 0x9d], [0xf4, 0x90, 0x80, 0x80], [0xf8], [0xff], [0xc3, 0xc3, 0xa9]);
    pieces.push(...malformed.map((bytes) => Buffer.from(bytes)));
    const next = random(7);
    for (let round = 0; round < 200; round++) {
      const parts = Array.from(
        { length: 1 + Math.floor(next() * 60) },
        () => pieces[Math.floor(next() * pieces.length)]!,
      );
      const bytes = Buffer.concat(parts);
      const expected = new Map<string, number>();
      forEachWord(bytes.toString("utf8"), (word) => expected.set(word, (expected.get(word) ?? 0) + 1));
      const counts = new WordCounts();
      counts.addWords(bytes);
      const got = new Map<string, number>();
      counts.forEach((word, n) => got.set(word, n));
      expect(got, bytes.toString("hex")).toEqual(expected);
    }
  });

  it("keeps counting exactly as its table grows, and after it is cleared", () => {
    const counts = new WordCounts();
    const letters = (i: number): string =>
      [...i.toString(26)].map((digit) => String.fromCharCode(97 + parseInt(digit, 26))).join("");
    const words = Array.from({ length: 5000 }, (_, i) => "q".repeat(1 + (i % 5)) + letters(i));
    for (let pass = 1; pass <= 3; pass++) counts.addWords(Buffer.from(words.slice(0, pass * 1000).join(" ")));
    const got = new Map<string, number>();
    counts.forEach((word, n) => got.set(word, n));
    expect(got.size).toBe(3000);
    expect(got.get(words[0]!)).toBe(3);
    expect(got.get(words[1500]!)).toBe(2);
    expect(got.get(words[2999]!)).toBe(1);
    counts.clear();
    counts.addWords(Buffer.from(`${words[4999]} ${words[4999]}`));
    const after: [string, number][] = [];
    counts.forEach((word, n) => after.push([word, n]));
    expect(after).toEqual([[words[4999], 2]]);
  });
});
