// An example app for mr: counts word pairs ("bigrams") that occur next to each other on a line.
//
//   mr worker --port 8081 --apps-dir examples/apps
//   mr submit --app bigrams --reducers 4 --output out/ --param lowercase=yes --wait examples/data/*.txt
//
// It shows the whole app API: map, reduce, a combiner, a custom partitioner, job parameters
// (ctx.params) and a user counter (ctx.count), which `mr jobs show` lists as app.lines-without-pairs.

const WORD = /\p{L}+/gu;

/** Each line yields its adjacent word pairs, "first second", with a count of 1. */
export function map({ line }, emit, ctx) {
  const text = ctx.params.lowercase === "yes" ? line.toLowerCase() : line;
  const words = text.match(WORD) ?? [];
  if (words.length < 2) ctx.count("lines-without-pairs");
  for (let i = 1; i < words.length; i++) emit(`${words[i - 1]} ${words[i]}`, "1");
}

/** Sums counts; as a combiner it runs on the map side and shrinks what is shuffled. */
function sum(key, values, emit) {
  let total = 0;
  for (const value of values) total += Number(value);
  emit(key, String(total));
}

export const reduce = sum;
export const combine = sum;

/** Pairs that start with the same word go to the same reducer, so each part file reads like an index. */
export function partition(key, r) {
  const first = key.slice(0, key.indexOf(" "));
  let hash = 0;
  for (let i = 0; i < first.length; i++) hash = (Math.imul(hash, 31) + first.charCodeAt(i)) >>> 0;
  return hash % r;
}
