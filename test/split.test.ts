import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readSplit, readSplitBlocks, splitInputs } from "../src/mr/split.js";
import { tempDir } from "./helpers/tmp.js";

async function linesOf(path: string, size: number, splitSize: number) {
  const splits = splitInputs([{ path, size }], splitSize);
  const perSplit: { offset: number; line: string }[][] = [];
  for (const split of splits) {
    const lines: { offset: number; line: string }[] = [];
    await readSplit(split, (offset, line) => lines.push({ offset, line }));
    perSplit.push(lines);
  }
  return { splits, perSplit, all: perSplit.flat() };
}

function write(text: string): { path: string; size: number } {
  const path = join(tempDir(), "input.txt");
  writeFileSync(path, text);
  return { path, size: Buffer.byteLength(text) };
}

describe("splitInputs", () => {
  it("cuts each file into ranges of at most the split size, and an empty file into none", () => {
    expect(
      splitInputs(
        [
          { path: "a", size: 10 },
          { path: "empty", size: 0 },
          { path: "b", size: 4 },
        ],
        4,
      ),
    ).toEqual([
      { file: "a", start: 0, end: 4 },
      { file: "a", start: 4, end: 8 },
      { file: "a", start: 8, end: 10 },
      { file: "b", start: 0, end: 4 },
    ]);
  });
});

describe("readSplit", () => {
  it("gives a line that crosses a split edge to the split it starts in", async () => {
    const { path, size } = write("alpha\nbravo charlie\ndelta\n");
    const { perSplit } = await linesOf(path, size, 8); // the edge at 8 falls inside "bravo charlie"
    expect(perSplit.map((lines) => lines.map((l) => l.line))).toEqual([
      ["alpha", "bravo charlie"],
      [],
      ["delta"],
      [],
    ]);
  });

  it("gives a line that starts exactly at a split edge to the split before it", async () => {
    const { path, size } = write("abc\ndef\nghi\n");
    const { perSplit } = await linesOf(path, size, 4); // "def" starts at byte 4
    expect(perSplit.map((lines) => lines.map((l) => l.line))).toEqual([["abc", "def"], ["ghi"], []]);
  });

  it("strips CRLF and reports byte offsets of line starts", async () => {
    const { path, size } = write("one\r\ntwo\r\n\r\nfour");
    const { all } = await linesOf(path, size, 1 << 20);
    expect(all).toEqual([
      { offset: 0, line: "one" },
      { offset: 5, line: "two" },
      { offset: 10, line: "" },
      { offset: 12, line: "four" },
    ]);
  });

  it("reads the last line of a file without a final newline", async () => {
    const { path, size } = write("first\nlast");
    for (const splitSize of [1, 3, 6, 7, 100]) {
      const { all } = await linesOf(path, size, splitSize);
      expect(all.map((l) => l.line)).toEqual(["first", "last"]);
    }
  });

  it("reads an empty file as no records", async () => {
    const { path, size } = write("");
    const { splits, all } = await linesOf(path, size, 10);
    expect(splits).toEqual([]);
    expect(all).toEqual([]);
  });

  it("reads every line exactly once for every split size, down to 1 byte", async () => {
    const text = "a\n\nbb\r\nccc\nüñï\n\n\ndddd eeee\nf";
    const { path, size } = write(text);
    const expected = text.split("\n").map((line) => line.replace(/\r$/, ""));
    for (let splitSize = 1; splitSize <= size + 1; splitSize++) {
      const { all } = await linesOf(path, size, splitSize);
      expect(
        all.map((l) => l.line),
        `split size ${splitSize}`,
      ).toEqual(expected);
    }
  });

  it("hands out blocks of whole lines that, over all splits, cover the file once", async () => {
    const text = "a\n\nbb\r\nccc\nüñï\n\n\ndddd eeee\nf";
    const { path, size } = write(text);
    const bytes = Buffer.from(text);
    for (let splitSize = 1; splitSize <= size + 1; splitSize++) {
      const blocks: Buffer[] = [];
      for (const split of splitInputs([{ path, size }], splitSize)) {
        await readSplitBlocks(split, (block, offset) => {
          expect(block.equals(bytes.subarray(offset, offset + block.length))).toBe(true);
          expect(offset === 0 || bytes[offset - 1] === 0x0a, `block at ${offset}`).toBe(true);
          blocks.push(Buffer.from(block));
        });
      }
      expect(Buffer.concat(blocks).toString(), `split size ${splitSize}`).toBe(text);
    }
  });

  it("lets timers run between blocks, however long each takes", async () => {
    const { path, size } = write("a line of text\n".repeat(300_000)); // 4.5 MB: five reads
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let blocks = 0;
    try {
      await readSplitBlocks({ file: path, start: 0, end: size }, () => {
        blocks++;
        const until = performance.now() + 20; // a slow block mapper
        while (performance.now() < until);
      });
    } finally {
      clearInterval(timer);
    }
    expect(blocks).toBeGreaterThanOrEqual(5);
    expect(ticks).toBeGreaterThanOrEqual(blocks - 1);
  });

  it("handles lines longer than the read buffer", async () => {
    const long = "x".repeat(3 * 1024 * 1024);
    const { path, size } = write(`${long}\nshort\n${long}y\n`);
    const { all } = await linesOf(path, size, 1024 * 1024);
    expect(all.map((l) => l.line.length)).toEqual([long.length, 5, long.length + 1]);
    expect(all[1]).toEqual({ offset: long.length + 1, line: "short" });
  });
});
