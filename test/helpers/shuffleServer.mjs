/**
 * A shuffle service in a process of its own, holding one map output of about 8 MiB for job 1
 * (with shuffle.test.ts's key): prints `{ address, attemptId, pid }` as a line of JSON, then
 * serves until killed. Runs from dist/ (npm test builds first).
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

const dir = process.argv[2];
const input = join(dir, "input.txt");
const word = (i) => `w${i.toString(26).replace(/./g, (d) => String.fromCharCode(97 + parseInt(d, 26)))}`;
writeFileSync(input, Array.from({ length: 600_000 }, (_, i) => word(i)).join("\n"));
const attemptId = "a0000000000000001";
const { output } = await runMapTask({
  app: BUILTIN_APPS.wordcount,
  params: {},
  split: { file: input, start: 0, end: 1e9 },
  reducers: 1,
  path: join(dir, `${attemptId}.out`),
  spillDir: join(dir, attemptId),
});
const held = { ...output, jobId: 1, shuffleKey: "5".repeat(32) };
const service = createShuffleService(
  (id) => (id === attemptId ? held : undefined),
  pino({ level: "silent" }),
);
const server = new Server({ "grpc.max_receive_message_length": LIMITS.shuffleMessageBytes });
addService(server, ShuffleServiceService, service);
const address = await listen(server, "127.0.0.1:0");
console.log(JSON.stringify({ address, attemptId, pid: process.pid, bytes: output.partitions[0][1] }));
