/** The apps a worker offers: the built-in ones, and the modules of its own apps directory. */
import { readdirSync } from "node:fs";
import { join, parse } from "node:path";
import { pathToFileURL } from "node:url";
import { InvalidArgumentError, toError } from "../errors.js";
import type { App } from "../mr/app.js";
import { BUILTIN_APPS } from "../mr/apps/index.js";

const APP_FILE = /^([A-Za-z][\w-]*)\.(mjs|js)$/;

/**
 * Loads every ES module `DIR/NAME.mjs` or `DIR/NAME.js` as app NAME. A module exports `map` and
 * `reduce`, and optionally `combine`, `partition` and `blockMapper`, as named exports or as a
 * default object.
 * Apps come only from this directory, never from a path a client sends.
 */
export async function loadApps(appsDir: string | undefined): Promise<Readonly<Record<string, App>>> {
  const apps: Record<string, App> = { ...BUILTIN_APPS };
  if (appsDir === undefined) return Object.freeze(apps);
  let files: string[];
  try {
    files = readdirSync(appsDir).sort();
  } catch (err) {
    throw new InvalidArgumentError(`apps directory ${appsDir}: ${toError(err).message} (check --apps-dir)`);
  }
  for (const file of files) {
    const match = APP_FILE.exec(file);
    if (!match) continue;
    const name = match[1]!;
    if (Object.hasOwn(BUILTIN_APPS, name) || Object.hasOwn(apps, name)) {
      throw new InvalidArgumentError(
        `apps directory ${appsDir}: ${file} clashes with app ${name} (rename the file)`,
      );
    }
    apps[name] = await importApp(join(appsDir, file));
  }
  return Object.freeze(apps);
}

async function importApp(path: string): Promise<App> {
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidArgumentError(`app ${path} could not be loaded: ${toError(err).message}`, {
      cause: err,
    });
  }
  const source = (typeof module.map === "function" ? module : module.default) as Partial<App> | undefined;
  const name = parse(path).name;
  if (typeof source?.map !== "function" || typeof source.reduce !== "function") {
    throw new InvalidArgumentError(
      `app ${name} (${path}) must export functions map and reduce, by name or as a default object`,
    );
  }
  for (const optional of ["combine", "partition", "blockMapper"] as const) {
    if (source[optional] !== undefined && typeof source[optional] !== "function") {
      throw new InvalidArgumentError(`app ${name} (${path}): ${optional} must be a function`);
    }
  }
  return {
    map: source.map.bind(source),
    reduce: source.reduce.bind(source),
    combine: source.combine?.bind(source),
    partition: source.partition?.bind(source),
    blockMapper: source.blockMapper?.bind(source),
  };
}
