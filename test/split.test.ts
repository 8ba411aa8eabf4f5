import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readRange, readRangeBlocks, splitInputs } from "../src/mr/split.js";
import { tempDir } from "./helpers/tmp.js";

async function linesOf(path: string, size: number, splitSize: number) {
  const splits = splitInputs([{ path, size }], { splitSizeBytes: splitSize });
  const perSplit: { offset: number; line: string }[][] = [];
  for (const range of splits.flat()) {
    const lines: { offset: number; line: string }[] = [];
    await readRange(range, (offset, line) => lines.push({ offset, line }));
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
  const range = (file: string, start: number, end: number) => ({ file, start, end });

  it("cuts each file into ranges of the split size, and an empty file into none", () => {
    expect(
      splitInputs(
        [
          { path: "a", size: 10 },
          { path: "empty", size: 0 },
          { path: "b", size: 4 },
        ],
        { splitSizeBytes: 4 },
      ),
    ).toEqual([[range("a", 0, 4)], [range("a", 4, 8)], [range("a", 8, 10)], [range("b", 0, 4)]]);
  });

  it("lets a file's last range run 10% past the split size rather than leave a small tail, as Hadoop", () => {
    const ranges = (size: number) =>
      splitInputs([{ path: "f", size }], { splitSizeBytes: 10, openCostBytes: 10 }).flat();
    expect(ranges(21)).toEqual([range("f", 0, 10), range("f", 10, 21)]);
    expect(ranges(22)).toEqual([range("f", 0, 10), range("f", 10, 20), range("f", 20, 22)]);
  });

  it("packs small files in input order up to the split size, each counting its open cost", () => {
    const files = [
      { path: "a", size: 30 },
      { path: "b", size: 30 },
      { path: "c", size: 30 },
      { path: "d", size: 250 },
      { path: "e", size: 5 },
    ];
    // a and b cost 40 + 30 ≤ 100; c would make 110. A range of the split size stays alone; the
    // tail of d (50) takes e (5) beside it.
    expect(splitInputs(files, { splitSizeBytes: 100, openCostBytes: 10 })).toEqual([
      [range("a", 0, 30), range("b", 0, 30)],
      [range("c", 0, 30)],
      [range("d", 0, 100)],
      [range("d", 100, 200)],
      [range("d", 200, 250), range("e", 0, 5)],
    ]);
  });

  it("leaves at least as many splits as slots when the input is small, as Spark's bytes per core", () => {
    const files = Array.from({ length: 8 }, (_, i) => ({ path: `f${i}`, size: 10 }));
    const sizes = (parallelism: number) =>
      splitInputs(files, { splitSizeBytes: 1000, openCostBytes: 10, parallelism }).map((s) => s.length);
    expect(sizes(4)).toEqual([2, 2, 2, 2]); // 160 bytes of cost over 4 slots: 40 each
    expect(sizes(1)).toEqual([8]); // one slot: one map, up to the split size
    expect(sizes(100)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]); // never under one open cost: a file each
  });

  it("makes whole waves of even splits, so that no slot runs a last map alone", () => {
    // 10 files of 100 bytes, 10 of open cost: 1,100 in all. At most 440 a split (400 and the
    // slop), 2 slots: 3 splits would do, but 2 waves of 2 even ones (275 each, as near as files
    // go) finish sooner.
    const files = Array.from({ length: 10 }, (_, i) => ({ path: `f${i}`, size: 100 }));
    const sizes = splitInputs(files, { splitSizeBytes: 400, openCostBytes: 10, parallelism: 2 }).map(
      (split) => split.length,
    );
    expect(sizes).toEqual([3, 2, 3, 2]);
  });

  it("gives every file a split of its own when the open cost is the split size", () => {
    const files = Array.from({ length: 5 }, (_, i) => ({ path: `f${i}`, size: 3 }));
    expect(splitInputs(files, { splitSizeBytes: 64, openCostBytes: 64 })).toHaveLength(5);
  });

  it("packs by bytes alone with no open cost", () => {
    const files = Array.from({ length: 10 }, (_, i) => ({ path: `f${i}`, size: 10 }));
    expect(splitInputs(files, { splitSizeBytes: 50, openCostBytes: 0 }).map((split) => split.length)).toEqual(
      [5, 5],
    );
  });
});

describe("readRange", () => {
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
      for (const range of splitInputs([{ path, size }], { splitSizeBytes: splitSize }).flat()) {
        await readRangeBlocks(range, (block, offset) => {
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
      await readRangeBlocks({ file: path, start: 0, end: size }, () => {
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
