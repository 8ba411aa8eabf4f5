#!/usr/bin/env node
import { main } from "../dist/cli/main.js";

const code = await main(process.argv.slice(2), process.env);
// Long-running commands (driver, worker) keep the process alive and exit on a signal.
if (code !== 0) process.exit(code);
