/**
 * The check of a submit, field by field, before anything is stored or touched: each refusal
 * names the field, the limit or root it breaks, and what to do. Paths come back as the real
 * paths the workers will use, so that two spellings of one directory are one directory. The
 * driver checks every SubmitJob with it, and `mr run --local` its own job, so that both refuse
 * the same things in the same words.
 */
import { opendirSync, statSync } from "node:fs";
import { join, sep } from "node:path";
import { DEFAULT_REDUCE_SLOWSTART, type DriverConfig } from "../config.js";
import { InvalidArgumentError, toError } from "../errors.js";
import type * as pb from "../gen/mapreduce.js";
import { LIMITS, MAX_JOB_PRIORITY } from "../limits.js";
import { grepPattern } from "../mr/apps/grep.js";
import { checkOutputDir } from "../mr/output.js";
import { listInputObjects } from "../mr/s3.js";
import { isS3Uri, s3Uri, parseS3Uri, type S3Options } from "../mr/s3Uri.js";
import { checkS3Output, normalS3Output } from "../mr/s3Output.js";
import { DEFAULT_OPEN_COST_BYTES } from "../mr/split.js";
import type { Roots } from "../roots.js";
import type { SubmitRequest } from "./scheduler.js";

export async function validateSubmit(
  req: pb.SubmitJobRequest,
  defaults: Pick<DriverConfig, "defaultSplitSizeBytes" | "s3Endpoint">,
  roots: Roots,
  apps: readonly string[],
  /** Throws if a job owns the output directory: a clearer refusal than the files it left. */
  refuseOwned: (outputDir: string, overwrite: boolean) => void = () => undefined,
): Promise<SubmitRequest> {
  const s3: S3Options = { endpoint: defaults.s3Endpoint };
  if (!apps.includes(req.app)) {
    const app = req.app.length > 64 ? `${req.app.slice(0, 64)}…` : req.app;
    throw new InvalidArgumentError(
      `app: unknown app ${JSON.stringify(app)} (available: ${apps.join(", ")}; a worker offers more with --apps-dir)`,
    );
  }
  if (!Number.isInteger(req.reducers) || req.reducers < 1 || req.reducers > LIMITS.reducers) {
    throw new InvalidArgumentError(
      `reducers: must be an integer from 1 to ${LIMITS.reducers}, got ${req.reducers}`,
    );
  }
  if (!Number.isInteger(req.priority) || req.priority < 0 || req.priority > MAX_JOB_PRIORITY) {
    throw new InvalidArgumentError(
      `priority: must be an integer from 0 to ${MAX_JOB_PRIORITY}, got ${req.priority}`,
    );
  }
  if (!Number.isInteger(req.maxRunningTasks) || req.maxRunningTasks < 0) {
    throw new InvalidArgumentError(
      `max_running_tasks: must be 0 (no cap) or more, got ${req.maxRunningTasks}`,
    );
  }
  if (!Number.isSafeInteger(req.splitSizeBytes) || req.splitSizeBytes < 0) {
    throw new InvalidArgumentError(`split_size_bytes: must be positive, got ${req.splitSizeBytes}`);
  }
  checkParams(req.params);
  if (req.app === "grep") checkGrepPattern(req.params.pattern);
  // The roots confine files; a store's objects are what its credentials allow.
  const toStore = isS3Uri(req.outputDir);
  const outputDir = toStore ? normalS3Output(req.outputDir) : roots.checkOutput(req.outputDir);
  refuseOwned(outputDir, req.overwrite);
  if (toStore) await checkS3Output(outputDir, req.overwrite, s3);
  else checkOutputDir(outputDir, req.overwrite);
  const inputs = await expandInputs(req.inputs, roots, s3);
  // An input inside the output directory would be emptied away by --overwrite, or overwritten.
  const separator = toStore ? "/" : sep;
  const inside = inputs.find(({ path }) =>
    path.startsWith(outputDir.endsWith(separator) ? outputDir : outputDir + separator),
  );
  if (inside !== undefined) {
    throw new InvalidArgumentError(
      `output directory ${outputDir} holds the input ${inside.path} (choose an --output apart from the inputs)`,
    );
  }
  const splitSizeBytes = req.splitSizeBytes || defaults.defaultSplitSizeBytes;
  const openCostBytes = req.openCostBytes ?? DEFAULT_OPEN_COST_BYTES;
  if (!Number.isSafeInteger(openCostBytes) || openCostBytes < 0) {
    throw new InvalidArgumentError(`open_cost_bytes: must be 0 or more, got ${openCostBytes}`);
  }
  const reduceSlowstart = req.reduceSlowstart ?? DEFAULT_REDUCE_SLOWSTART;
  if (!(reduceSlowstart >= 0 && reduceSlowstart <= 1)) {
    throw new InvalidArgumentError(
      `reduce_slowstart: must be 0 to 1, the share of the maps that commit before the reduces start; got ${reduceSlowstart}`,
    );
  }
  // As many maps as ranges at most: packing only joins small files.
  const maps = inputs.reduce((sum, { size }) => sum + Math.ceil(size / splitSizeBytes), 0);
  if (maps > LIMITS.maps) {
    const least = Math.ceil(inputs.reduce((sum, { size }) => sum + size, 0) / LIMITS.maps);
    throw new InvalidArgumentError(
      `split_size_bytes: ${splitSizeBytes} bytes cuts the inputs into ${maps} maps, more than the ${LIMITS.maps} a job may have (give --split-size ${least} or more)`,
    );
  }
  return {
    app: req.app,
    inputs,
    outputDir,
    reducers: req.reducers,
    splitSizeBytes,
    openCostBytes,
    params: req.params,
    overwrite: req.overwrite,
    priority: req.priority,
    maxRunningTasks: req.maxRunningTasks,
    speculation: !req.noSpeculation,
    reduceSlowstart,
  };
}

function checkParams(params: Readonly<Record<string, string>>): void {
  const entries = Object.entries(params);
  if (entries.length > LIMITS.params) {
    throw new InvalidArgumentError(`params: at most ${LIMITS.params} params, got ${entries.length}`);
  }
  let bytes = 0;
  for (const [name, value] of entries) {
    if (!/^[\w.-]+$/.test(name) || Buffer.byteLength(name) > LIMITS.paramNameBytes) {
      throw new InvalidArgumentError(
        `params: a name is letters, digits, _, . or -, at most ${LIMITS.paramNameBytes} bytes, got ${JSON.stringify(name.slice(0, 64))}`,
      );
    }
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  if (bytes > LIMITS.paramBytes) {
    throw new InvalidArgumentError(
      `params: at most ${LIMITS.paramBytes} bytes in all, got ${bytes} (pass large data as an input file)`,
    );
  }
}

function checkGrepPattern(pattern: string | undefined): void {
  try {
    grepPattern(pattern);
  } catch (err) {
    throw new InvalidArgumentError(`params: ${toError(err).message}`);
  }
}

/**
 * The input files with their sizes: each input that is a file, and the regular files directly
 * inside each input that is a directory (but for hidden and `_` names), all as real paths
 * inside the input roots; for an `s3://` input, the object, or the objects directly under a
 * prefix, by the same rule (see listInputObjects). A file named twice, or named and inside a
 * named directory, is read once. Inputs that hold no file at all are refused: a job of no maps
 * would be no job.
 */
async function expandInputs(
  paths: readonly string[],
  roots: Roots,
  s3: S3Options,
): Promise<{ path: string; size: number }[]> {
  if (paths.length === 0) throw new InvalidArgumentError("inputs: give at least one input file");
  if (paths.length > LIMITS.inputs) {
    throw new InvalidArgumentError(
      `inputs: at most ${LIMITS.inputs} inputs, got ${paths.length} (name their directory instead)`,
    );
  }
  const files: { path: string; size: number }[] = [];
  const seen = new Set<string>();
  let bytes = 0;
  const add = (path: string, size: number): void => {
    if (seen.has(path)) return;
    seen.add(path);
    bytes += Buffer.byteLength(path);
    if (files.length === LIMITS.inputFiles || bytes > LIMITS.inputPathBytes) {
      throw new InvalidArgumentError(
        `inputs: a job may read at most ${LIMITS.inputFiles} files, whose paths take ${LIMITS.inputPathBytes} bytes in all (split the job, or merge small files)`,
      );
    }
    files.push({ path, size });
  };
  for (const path of paths) {
    if (isS3Uri(path)) {
      const { bucket } = parseS3Uri(path);
      const objects = await listInputObjects(path, s3, LIMITS.inputFiles);
      for (const { key, size } of objects) add(s3Uri({ bucket, key }), size);
      continue;
    }
    const real = roots.checkInput(path);
    const stats = statSync(real);
    if (stats.isFile()) add(real, stats.size);
    else if (!stats.isDirectory()) throw new InvalidArgumentError(`input is not a file: ${path}`);
    else for (const file of listDirectory(real, roots)) add(file.path, file.size);
  }
  if (files.length === 0) {
    throw new InvalidArgumentError(
      `inputs: ${paths.join(", ")} holds no input files (names that start with . or _ are skipped)`,
    );
  }
  return files;
}

/** The regular files directly in `dir`, sorted, read one entry at a time up to the limit. */
function listDirectory(dir: string, roots: Roots): { path: string; size: number }[] {
  const names: string[] = [];
  const handle = opendirSync(dir);
  try {
    for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
      if (entry.name.startsWith(".") || entry.name.startsWith("_")) continue;
      if (names.length === LIMITS.inputFiles) {
        throw new InvalidArgumentError(
          `inputs: ${dir} holds more than ${LIMITS.inputFiles} files, more than a job may read (split the job, or merge small files)`,
        );
      }
      names.push(entry.name);
    }
  } finally {
    handle.closeSync();
  }
  const files: { path: string; size: number }[] = [];
  for (const name of names.sort()) {
    const real = roots.checkInput(join(dir, name));
    const stats = statSync(real);
    if (stats.isFile()) files.push({ path: real, size: stats.size });
  }
  return files;
}
