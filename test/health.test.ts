/**
 * gRPC health checking and reflection through real processes: the driver is SERVING once it
 * reaches Redis, NOT_SERVING while it cannot, and `mr status` says so; a worker is SERVING while
 * registered; both describe their services to a client that has no proto files and no secret.
 * The driver's /healthz says the same over HTTP.
 */
import { credentials, loadPackageDefinition, makeGenericClientConstructor, type Client } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { service as healthService } from "grpc-health-check";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { startRedisServer, type RedisServer } from "../src/cli/processes.js";
import { mr, startCluster, type Cluster } from "./helpers/cluster.js";
import { tempDir } from "./helpers/tmp.js";

let cluster: Cluster | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  await cluster?.stop();
  await redis?.stop();
  cluster = undefined;
  redis = undefined;
});

const HealthClient = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");

/** grpc.health.v1 Check of the whole server at `address`, with no secret. */
function checkHealth(address: string): Promise<unknown> {
  const client = new HealthClient(address, credentials.createInsecure()) as unknown as Client & {
    check(request: object, callback: (err: Error | null, reply: { status: unknown }) => void): void;
  };
  return new Promise((resolve, reject) =>
    client.check({ service: "" }, (err, reply) => {
      client.close();
      if (err) reject(err);
      else resolve(reply.status);
    }),
  );
}

/** The services the server at `address` names through grpc.reflection.v1, with no proto files of its own. */
function reflectedServices(address: string): Promise<string[]> {
  const reflectionDir = dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json"));
  const definition = loadSync(join(reflectionDir, "build/proto/grpc/reflection/v1/reflection.proto"), {
    keepCase: true,
  });
  const loaded = loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (address: string, creds: unknown) => Client } } };
  };
  const client = new loaded.grpc.reflection.v1.ServerReflection(
    address,
    credentials.createInsecure(),
  ) as Client & {
    ServerReflectionInfo(): NodeJS.ReadWriteStream & { write(message: object): boolean; end(): void };
  };
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo();
    stream.on("data", (reply: { list_services_response?: { service: { name: string }[] } }) => {
      resolve(reply.list_services_response?.service.map(({ name }) => name) ?? []);
      stream.end();
      client.close();
    });
    stream.on("error", reject);
    stream.write({ list_services: "" });
  });
}

/** GET /healthz on the driver's HTTP port: its status code and the status it names. */
async function httpHealth(base: string): Promise<string> {
  const res = await fetch(`${base}/healthz`);
  const { status } = (await res.json()) as { status: string };
  return `${res.status} ${status}`;
}

async function waitFor<T>(
  probe: () => Promise<T>,
  want: (value: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (want(value) || Date.now() > deadline) return value;
    await sleep(200);
  }
}

describe("health and reflection", () => {
  it("the driver is SERVING with Redis and NOT_SERVING without, and mr status says so", async () => {
    redis = await startRedisServer();
    const port = Number(new URL(redis.url).port);
    const dir = tempDir();
    cluster = await startCluster({ dir, redisUrl: redis.url, workers: 1 });
    const address = cluster.env.MR_DRIVER!;

    // Neither health nor reflection asks for the secret the cluster's other services need.
    expect(
      await waitFor(
        () => checkHealth(address),
        (s) => s === "SERVING",
      ),
    ).toBe("SERVING");
    expect(await httpHealth(cluster.httpUrl!)).toBe("200 SERVING");
    const status = await mr(["status"], cluster.env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`driver   ${address}: SERVING`);
    expect(status.stdout).toMatch(/workers {2}1 alive, running \d+ attempts in 1 slot\n/); // the test's --slots 1
    const json = JSON.parse((await mr(["status", "--json"], cluster.env)).stdout);
    expect(json).toMatchObject({ health: "SERVING", workers: 1, slots: 1, runningJobs: [] });
    expect((await reflectedServices(address)).sort()).toEqual(["mr.v1.JobService", "mr.v1.TaskService"]);

    const worker = (await cluster.client.listWorkers()).workers[0]!;
    expect(await checkHealth(worker.address)).toBe("SERVING");
    expect(await reflectedServices(worker.address)).toEqual(["mr.v1.ShuffleService"]);

    await redis.stop();
    redis = undefined;
    expect(
      await waitFor(
        () => checkHealth(address),
        (s) => s === "NOT_SERVING",
      ),
    ).toBe("NOT_SERVING");
    expect(await httpHealth(cluster.httpUrl!)).toBe("503 NOT_SERVING");
    const down = await mr(["status"], cluster.env);
    expect(down.code).toBe(1);
    expect(down.stdout).toContain(`${address}: NOT_SERVING (it cannot reach Redis`);

    redis = await startRedisServer(port);
    expect(
      await waitFor(
        () => checkHealth(address),
        (s) => s === "SERVING",
      ),
    ).toBe("SERVING");
  });
});
