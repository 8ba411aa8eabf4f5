#!/usr/bin/env node
import { main } from "../dist/cli/main.js";

// grpc-js names a TLS server by its address, and Node warns (DEP0123) when that is an IP; the
// certificate is still checked against the IP. Every other warning is printed as usual.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const code = typeof rest[0] === "object" ? rest[0]?.code : rest[1];
  if (code !== "DEP0123") emitWarning(warning, ...rest);
};

const code = await main(process.argv.slice(2), process.env);
// Long-running commands (driver, worker) keep the process alive and exit on a signal.
if (code !== 0) process.exit(code);
