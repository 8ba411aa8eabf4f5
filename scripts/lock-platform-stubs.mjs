#!/usr/bin/env node
// Adds lock entries for the other platforms' optional binary packages (buf, msgpackr-extract)
// that the registry mirror of our build machines does not serve. npm records such packages in
// package-lock.json and skips them on a platform they do not match; without their entries,
// `npm ci` refuses the lock as out of sync. Run after `npm install` changes the lock.
import { readFileSync, writeFileSync } from "node:fs";

const CPU = { arm64: "arm64", aarch64: "arm64", x64: "x64", armv7: "arm", arm: "arm", ia32: "ia32" };
const lockPath = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const added = [];
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const where = `node_modules/${name}`;
    if (lock.packages[where]) continue;
    const match = /-(darwin|linux|win32|freebsd)-(\w+)$/.exec(name);
    if (!match || !CPU[match[2]])
      throw new Error(`${name} (optional dependency of ${path}) is missing and is no platform package`);
    if (match[1] === process.platform && CPU[match[2]] === process.arch) {
      throw new Error(
        `${name} is missing, and it is this platform's own package: npm install should have fetched it`,
      );
    }
    lock.packages[where] = { version, dev: entry.dev, optional: true, os: [match[1]], cpu: [CPU[match[2]]] };
    if (!entry.dev) delete lock.packages[where].dev;
    added.push(`${name}@${version}`);
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : 1)),
);
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
console.log(added.length ? `added lock entries: ${added.join(", ")}` : "the lock needed no entries");
