import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { random } from "../../src/bench/corpus.js";

export { random };

const WORDS = [
  "the",
  "and",
  "of",
  "to",
  "a",
  "in",
  "that",
  "it",
  "was",
  "he",
  "for",
  "on",
  "are",
  "with",
  "as",
  "his",
  "they",
  "be",
  "at",
  "one",
  "have",
  "this",
  "from",
  "or",
  "had",
  "by",
  "word",
  "but",
  "what",
  "some",
  "we",
  "can",
  "out",
  "other",
  "were",
  "all",
  "there",
  "when",
  "up",
  "use",
  "your",
  "how",
  "said",
  "an",
  "each",
  "She",
  "The",
  "Über",
  "café",
  "naïve",
  "Ærø",
  "東京",
  "Москва",
  "ελληνικά",
  "straße",
  "Ünïcödé",
];

/**
 * Writes `files` text files of about `bytes` each into `dir`: words drawn with a skewed
 * distribution, punctuation and digits between them, CRLF on some lines and no final newline on
 * the last file, so the splitter and tokenizer meet the awkward cases.
 */
export function writeCorpus(dir: string, options: { files: number; bytes: number; seed: number }): string[] {
  const next = random(options.seed);
  const paths: string[] = [];
  for (let f = 0; f < options.files; f++) {
    const lines: string[] = [];
    let size = 0;
    while (size < options.bytes) {
      const count = 1 + Math.floor(next() * 14);
      const parts: string[] = [];
      for (let w = 0; w < count; w++) {
        const word = WORDS[Math.floor(next() ** 2 * WORDS.length)]!;
        const extra = next() < 0.1 ? `${Math.floor(next() * 100)}` : next() < 0.1 ? "," : "";
        parts.push(word + extra);
      }
      const line = parts.join(" ") + (next() < 0.2 ? "\r" : "");
      lines.push(line);
      size += line.length + 1;
    }
    const path = join(dir, `input-${f}.txt`);
    const last = f === options.files - 1;
    writeFileSync(path, lines.join("\n") + (last ? "" : "\n"));
    paths.push(path);
  }
  return paths;
}

/** Word counts computed the plain way, as an oracle independent of the engine. */
export function countWords(paths: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const path of paths) {
    for (const word of readFileSync(path, "utf8").match(/\p{L}+/gu) ?? [])
      counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}

/** All lines of every part file in `dir`, sorted: the comparable form of a job's output. */
export function readOutput(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.startsWith("part-r-"))
    .sort()
    .flatMap((name) =>
      readFileSync(join(dir, name), "utf8")
        .split("\n")
        .filter((line) => line !== ""),
    )
    .sort();
}

/** An output directory's part files, by name: to compare two outputs file for file. */
export function partFiles(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((name) => name.startsWith("part-r-"))
      .map((name) => [name, readFileSync(join(dir, name), "utf8")]),
  );
}
