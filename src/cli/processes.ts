/** Starting and stopping the processes of a local cluster: used by `mr demo`, the tests and the benchmark. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** bin/mr.js of this package, from src/cli or dist/cli alike. */
export const MR_BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "mr.js");

export interface MrProcess {
  child: ChildProcess;
  /** The address it printed when ready. */
  address: string;
  /** The HTTP address it printed, if it serves HTTP: the web UI and /metrics. */
  httpAddress: string | undefined;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** It has not exited: neither with a code nor by a signal. */
  running(): boolean;
}

/**
 * Spawns `mr ARGS…` and waits for its "listening on HOST:PORT" line. Its stderr (the JSON log)
 * goes to `stderr`, a file descriptor or "ignore".
 */
export async function spawnMr(
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    stderr?: number | "ignore" | "inherit" | "pipe";
    readyTimeoutMs?: number;
  } = {},
): Promise<MrProcess> {
  const child = spawn(process.execPath, [MR_BIN, ...args], {
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", options.stderr ?? "ignore"],
  });
  const exited = once(child, "exit");
  let httpAddress: string | undefined;
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`mr ${args[0]} did not start within ${options.readyTimeoutMs ?? 20_000} ms`)),
      options.readyTimeoutMs ?? 20_000,
    );
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      httpAddress ??= /http:\/\/([^/\s]+)\//.exec(line)?.[1];
      const match = /listening on (\S+?),?(\s|$)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`mr ${args[0]} exited before it was ready (code ${code}, signal ${signal})`));
    });
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    child,
    address,
    httpAddress,
    async stop(signal = "SIGTERM") {
      if (!running()) return;
      child.kill(signal);
      await exited;
    },
    running,
  };
}

/** A free TCP port on 127.0.0.1, as the OS hands them out. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/** True if a Redis server answers PING at `url` within `timeoutMs`. */
export async function pingRedis(url: string, timeoutMs = 1000): Promise<boolean> {
  const { Redis } = await import("ioredis"); // here, not at the top: only the demo and tests need it
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** Deletes every key under `prefix:` at `url`, a batch at a time, as a finished demo should. */
export async function deleteRedisKeys(url: string, prefix: string): Promise<number> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined);
  let deleted = 0;
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      if (keys.length > 0) deleted += await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  return deleted;
}

export interface RedisServer {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a private `redis-server` from PATH on a free loopback port: nothing on disk, and
 * `noeviction`, as the queue needs. Rejects with ENOENT if there is no redis-server.
 */
export async function startRedisServer(port?: number): Promise<RedisServer> {
  const chosen = port ?? (await freePort());
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(chosen),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--maxmemory-policy",
      "noeviction",
    ],
    { stdio: "ignore" },
  );
  const failed = new Promise<never>((_, reject) => child.once("error", reject));
  const exited = once(child, "exit");
  const url = `redis://127.0.0.1:${chosen}`;
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
      if (await pingRedis(url, 200)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not answer on ${url}`);
  })();
  await Promise.race([ready, failed]);
  return {
    url,
    port: chosen,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await exited;
    },
  };
}
