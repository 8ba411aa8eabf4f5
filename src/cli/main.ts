/** The `mr` command: wires each command group to the program and turns errors into exit codes. */
import { logVerbosity, setLogVerbosity } from "@grpc/grpc-js";
import { Command, CommanderError } from "commander";
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

function driverFlag(argv: string[]): string | undefined {
  const at = argv.indexOf("--driver");
  return at >= 0 ? argv[at + 1] : undefined;
}
