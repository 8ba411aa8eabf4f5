/**
 * The word tokenizer of wordcount and indexer: a word is a maximal run of Unicode letters
 * (`\p{L}+`). It scans char codes against a table of the BMP built once from the same regex,
 * which is several times faster than `matchAll`, and falls back to the regex for astral code
 * points.
 */
const LETTER = /\p{L}/u;
export const BMP_LETTERS = new Uint8Array(0x10000);
for (let code = 0; code < 0x10000; code++) {
  if (code >= 0xd800 && code < 0xe000) continue; // surrogates: handled in pairs below
  if (LETTER.test(String.fromCharCode(code))) BMP_LETTERS[code] = 1;
}

/** Whether a code point beyond the BMP is a letter. */
export function isAstralLetter(point: number): boolean {
  return LETTER.test(String.fromCodePoint(point));
}

/** The length in UTF-16 units of the letter at `i`, or 0 when there is none. */
function letterAt(line: string, i: number): number {
  const code = line.charCodeAt(i);
  if (code < 0xd800 || code >= 0xe000) return BMP_LETTERS[code]!;
  const point = line.codePointAt(i)!;
  return point > 0xffff && isAstralLetter(point) ? 2 : 0;
}

/** Calls `onWord` for each word of `line`, in order. */
export function forEachWord(line: string, onWord: (word: string) => void): void {
  const length = line.length;
  let i = 0;
  while (i < length) {
    let step = letterAt(line, i);
    if (step === 0) {
      i++;
      continue;
    }
    const start = i;
    do i += step;
    while (i < length && (step = letterAt(line, i)) !== 0);
    onWord(line.slice(start, i));
  }
}
