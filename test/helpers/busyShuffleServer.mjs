/**
 * A worker's shuffle side whose event loop is as busy as a worker's running a task: it lets
 * I/O run once every 20 ms (a turn). It writes one wordcount map output of a few MiB to disk,
 * prints `{ address, attemptId, onDisk }` as a line of JSON, then prints `served in N turns`
 * for each fetch it serves. It runs from the build: node busyShuffleServer.mjs DIR
 */
import { Server } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { ShuffleServiceService } from "../../dist/gen/mapreduce.js";
import { listen } from "../../dist/grpc.js";
import { BUILTIN_APPS } from "../../dist/mr/apps/index.js";
import { runMapTask } from "../../dist/mr/mapTask.js";
import { createShuffleService } from "../../dist/worker/shuffleServer.js";

const dir = process.argv[2];
const input = join(dir, "input.txt");
/** A distinct word of letters for each number (a word is a run of letters). */
const word = (i) => `w${i.toString(26).replace(/./g, (d) => String.fromCharCode(97 + parseInt(d, 26)))}`;
writeFileSync(input, Array.from({ length: 300_000 }, (_, i) => `${word(i)} shared`).join("\n"));
const attemptId = "a0000000000000001";
const { output } = await runMapTask({
  app: BUILTIN_APPS.wordcount,
  params: {},
  split: { file: input, start: 0, end: 1e9 },
  reducers: 1,
  path: join(dir, `${attemptId}.out`),
  spillDir: join(dir, attemptId),
});

let turns = 0;
const service = createShuffleService(
  // Held for job 1 with the shuffle key of shuffle.test.ts's reduce tasks.
  (id) => (id === attemptId ? { ...output, jobId: 1, shuffleKey: "5".repeat(32) } : undefined),
  pino({ level: "silent" }),
);
const fetchPartition = service.fetchPartition;
service.fetchPartition = (call) => {
  const from = turns;
  call.on("finish", () => console.log(`served in ${turns - from} turns`));
  fetchPartition(call);
};
const server = new Server();
server.addService(ShuffleServiceService, service);
const address = await listen(server, "127.0.0.1:0");
console.log(JSON.stringify({ address, attemptId, onDisk: output.data === undefined }));
for (;;) {
  const until = performance.now() + 20;
  while (performance.now() < until); // the task's work
  await new Promise((resolve) => setImmediate(resolve));
  turns++;
}
