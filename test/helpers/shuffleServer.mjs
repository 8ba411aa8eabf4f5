/**
 * A worker's shuffle side in a process of its own, run from the build:
 *   node shuffleServer.mjs DIR LINES [busy]
 * It writes one wordcount map output of LINES distinct words (and a shared one) to disk, held
 * for job 1 with shuffle.test.ts's shuffle key, and prints
 * `{ address, attemptId, pid, bytes, onDisk }` as a line of JSON. With `busy`, its event loop is
 * as busy as a worker's running a task: it lets I/O run once every 20 ms (a turn), and prints
 * `served in N turns` for each fetch it serves.
 */
import { Server } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { ShuffleServiceService } from "../../dist/gen/mapreduce.js";
import { addService, listen } from "../../dist/grpc.js";
import { LIMITS } from "../../dist/limits.js";
import { BUILTIN_APPS } from "../../dist/mr/apps/index.js";
import { runMapTask } from "../../dist/mr/mapTask.js";
import { createShuffleService } from "../../dist/worker/shuffleServer.js";

const [dir, lines, mode] = process.argv.slice(2);
const busy = mode === "busy";
const input = join(dir, "input.txt");
/** A distinct word of letters for each number (a word is a run of letters). */
const word = (i) => `w${i.toString(26).replace(/./g, (d) => String.fromCharCode(97 + parseInt(d, 26)))}`;
writeFileSync(input, Array.from({ length: Number(lines) }, (_, i) => `${word(i)} shared`).join("\n"));
const attemptId = "a0000000000000001";
const { output } = await runMapTask({
  app: BUILTIN_APPS.wordcount,
  params: {},
  split: [{ file: input, start: 0, end: 1e9 }],
  reducers: 1,
  path: join(dir, `${attemptId}.out`),
  spillDir: join(dir, attemptId),
});
const held = { ...output, jobId: 1, shuffleKey: "5".repeat(32) };
const service = createShuffleService(
  (id) => (id === attemptId ? held : undefined),
  pino({ level: "silent" }),
);

let turns = 0;
if (busy) {
  const fetchPartition = service.fetchPartition;
  service.fetchPartition = (call) => {
    const from = turns;
    call.on("finish", () => console.log(`served in ${turns - from} turns`));
    fetchPartition(call);
  };
}
const server = new Server({ "grpc.max_receive_message_length": LIMITS.shuffleMessageBytes });
addService(server, ShuffleServiceService, service);
const address = await listen(server, "127.0.0.1:0");
const bytes = output.partitions[0][1];
console.log(
  JSON.stringify({ address, attemptId, pid: process.pid, bytes, onDisk: output.data === undefined }),
);
while (busy) {
  const until = performance.now() + 20;
  while (performance.now() < until); // the task's work
  await new Promise((resolve) => setImmediate(resolve));
  turns++;
}
