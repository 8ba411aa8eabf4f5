/** The `mr` command: wires each command group to the program and turns errors into exit codes. */
import { logVerbosity, setLogVerbosity } from "@grpc/grpc-js";
import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { DEFAULT_DRIVER_ADDRESS } from "../config.js";
import { addDemoCommand } from "./demo.js";
import { ExitCode, reportError } from "./errors.js";
import { addJobsCommands } from "./jobs.js";
import { addServeCommands } from "./serve.js";
import { addSubmitCommands } from "./submit.js";

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // gRPC's own log lines ("E No address added …") repeat what mr says in its own words.
  if (env.GRPC_VERBOSITY === undefined) setLogVerbosity(logVerbosity.NONE);
  const program = new Command("mr")
    .description("mr: a fault-tolerant MapReduce job service")
    .version(packageVersion(), "-V, --version", "print mr's version")
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (text, write) =>
        write(
          `mr: ${text
            .replace(/^error: /, "")
            .trim()
            .replace(/\s*\n\s*/g, " ")} (see mr --help)\n`,
        ),
    })
    .exitOverride();
  addServeCommands(program, env);
  addSubmitCommands(program, env);
  addJobsCommands(program, env);
  addDemoCommand(program, env);
  try {
    await program.parseAsync(argv, { from: "user" });
    return ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; every other parse error is bad usage, already printed.
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    return reportError(err, { driver: driverFlag(argv) ?? env.MR_DRIVER ?? DEFAULT_DRIVER_ADDRESS }, env);
  }
}

/** The version in package.json, two directories up from here in src/ and in dist/ alike. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

function driverFlag(argv: string[]): string | undefined {
  const at = argv.indexOf("--driver");
  return at >= 0 ? argv[at + 1] : undefined;
}
