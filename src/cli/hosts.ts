/**
 * Test hosts on one machine, for the tests and `npm run bench:hosts`: each a Linux network
 * namespace with an address of its own, joined by veth pairs to a bridge in a namespace of its
 * own, as hosts on one switch. Nothing touches the machine's own namespace. Every host sees the
 * same filesystem, as a shared filesystem would give them. Links can go down and come back, and
 * carry delay and loss (`tc netem`). HostCluster puts mr on them: the driver, Redis, workers
 * and a client each on a host.
 *
 * Needs root and iproute2; `hostsUnavailable()` says why not, for the tests to skip.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { MR_BIN } from "./processes.js";

const IP = "ip";

/** Why test hosts cannot be made here, or undefined if they can. */
export function hostsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "test hosts need root (ip netns)";
  if (spawnSync(IP, ["-V"]).status !== 0) return "test hosts need iproute2 (the ip command)";
  if (spawnSync("tc", ["-V"]).status !== 0) return "test hosts need iproute2's tc";
  return undefined;
}

/**
 * Why links cannot carry delay and loss here, or undefined if they can: `tc netem` needs the
 * kernel's sch_netem, which some kernels (this sandbox's among them) are built without.
 */
export function netemUnavailable(): string | undefined {
  const missing = hostsUnavailable();
  if (missing !== undefined) return missing;
  const probe = `mr${process.pid % 100_000}probe`;
  try {
    execFileSync(IP, ["netns", "add", probe]);
    const added = spawnSync("tc", [
      "-n",
      probe,
      "qdisc",
      "add",
      "dev",
      "lo",
      "root",
      "netem",
      "delay",
      "1ms",
    ]);
    if (added.status !== 0) {
      return `this kernel has no tc netem (sch_netem): ${added.stderr.toString().trim()}`;
    }
    return undefined;
  } finally {
    spawnSync(IP, ["netns", "del", probe]);
  }
}

let networks = 0;

/** A set of test hosts on one switch, named and addressed by the caller's order. */
export class TestHosts {
  private readonly children = new Set<ChildProcess>();
  private closed = false;

  private constructor(
    /** Namespace names start with this; unique to this process and network. */
    private readonly prefix: string,
    /** The /24 the hosts' addresses are in: `10.X.Y.`. */
    private readonly subnet: string,
    readonly names: readonly string[],
  ) {}

  /** Makes the hosts, each at `10.X.Y.(i+1)` in the order named. On failure, removes what it made. */
  static create(names: readonly string[]): TestHosts {
    const n = ++networks;
    // Namespace and interface names stay short: Linux allows 15 bytes for an interface.
    const prefix = `mr${process.pid % 100_000}n${n}`;
    const subnet = `10.${200 + (process.pid % 50)}.${n % 250}.`;
    const hosts = new TestHosts(prefix, subnet, names);
    try {
      hosts.build();
    } catch (err) {
      hosts.destroy();
      throw err;
    }
    return hosts;
  }

  /** The address of host `name`. */
  address(name: string): string {
    const i = this.names.indexOf(name);
    if (i < 0) throw new Error(`no test host ${name}`);
    return `${this.subnet}${i + 1}`;
  }

  /** Runs `command args…` on host `name` as a child process (its pid is the command's own). */
  spawn(
    name: string,
    command: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; stderr?: number | "ignore" } = {},
  ): ChildProcess {
    const child = spawn(IP, ["netns", "exec", this.ns(name), command, ...args], {
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", options.stderr ?? "ignore"],
    });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** Like spawn, and waits for the "listening on ADDRESS" line; returns the child and its address. */
  async spawnServer(
    name: string,
    command: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; stderr?: number | "ignore"; ready?: RegExp } = {},
  ): Promise<{ child: ChildProcess; address: string }> {
    const child = this.spawn(name, command, args, options);
    const ready = options.ready ?? /listening on (\S+?),?(\s|$)/;
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${command} on ${name} did not start in 20 s`)),
        20_000,
      );
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const match = ready.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1] ?? "");
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${command} on ${name} exited with ${code} before it was ready`));
      });
    });
    return { child, address };
  }

  /** Runs a command on host `name` to its end; returns its exit code and output. */
  async run(name: string, command: string, args: string[], env?: NodeJS.ProcessEnv) {
    const child = spawn(IP, ["netns", "exec", this.ns(name), command, ...args], {
      env: env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, "exit")) as [number];
    return { code, stdout, stderr };
  }

  /** Takes host `name`'s link to the switch down, or brings it back up. */
  link(name: string, up: boolean): void {
    this.ip(["-n", this.switchNs, "link", "set", this.switchSide(name), up ? "up" : "down"]);
  }

  /** Delay and loss on host `name`'s link, both ways (`tc netem`); none to clear them. */
  netem(name: string, impairment: { delayMs: number; lossPercent: number } | "none"): void {
    for (const [ns, dev] of [
      [this.ns(name), this.hostSide(name)],
      [this.switchNs, this.switchSide(name)],
    ] as const) {
      if (impairment === "none") {
        spawnSync("tc", ["-n", ns, "qdisc", "del", "dev", dev, "root"]);
      } else {
        execFileSync("tc", [
          "-n",
          ns,
          "qdisc",
          "replace",
          "dev",
          dev,
          "root",
          "netem",
          "delay",
          `${impairment.delayMs}ms`,
          "loss",
          `${impairment.lossPercent}%`,
        ]);
      }
    }
  }

  /** Kills what runs on the hosts, and removes every namespace (and with them, every link). */
  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exits = [...this.children].map((child) => {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      return exited;
    });
    await Promise.all(exits);
    for (const name of [...this.names.map((host) => this.ns(host)), this.switchNs]) {
      spawnSync(IP, ["netns", "del", name]);
    }
  }

  private build(): void {
    this.ip(["netns", "add", this.switchNs]);
    this.ip(["-n", this.switchNs, "link", "add", "br0", "type", "bridge"]);
    this.ip(["-n", this.switchNs, "link", "set", "br0", "up"]);
    for (const name of this.names) {
      const ns = this.ns(name);
      this.ip(["netns", "add", ns]);
      // Made inside the host, then one end moved to the switch: no name ever lives in the
      // machine's own namespace.
      this.ip([
        "-n",
        ns,
        "link",
        "add",
        this.hostSide(name),
        "type",
        "veth",
        "peer",
        "name",
        this.switchSide(name),
      ]);
      this.ip(["-n", ns, "link", "set", this.switchSide(name), "netns", this.switchNs]);
      this.ip(["-n", this.switchNs, "link", "set", this.switchSide(name), "master", "br0", "up"]);
      this.ip(["-n", ns, "addr", "add", `${this.address(name)}/24`, "dev", this.hostSide(name)]);
      this.ip(["-n", ns, "link", "set", this.hostSide(name), "up"]);
      this.ip(["-n", ns, "link", "set", "lo", "up"]);
    }
  }

  private get switchNs(): string {
    return `${this.prefix}sw`;
  }

  private ns(name: string): string {
    return `${this.prefix}${name}`;
  }

  private hostSide(name: string): string {
    return `eth${this.names.indexOf(name)}`;
  }

  private switchSide(name: string): string {
    return `p${this.names.indexOf(name)}`;
  }

  private ip(args: string[]): void {
    execFileSync(IP, args, { stdio: ["ignore", "ignore", "pipe"] });
  }
}

export interface HostClusterOptions {
  /** Where the database, secrets, logs and worker data go; the driver's roots. */
  dir: string;
  workers: number;
  driverArgs?: string[];
  /** Offered by every worker beside the built-in apps. */
  appsDir?: string;
}

/**
 * mr on test hosts: `hub` (the driver), `redis`, `w1`…`wN` (a worker each, on its own address)
 * and `client`; secrets for both roles, and roots, as a deployment across hosts must have.
 * Every process logs JSON at debug into `dir/<host>.log`.
 */
export class HostCluster {
  /** Worker host name → the address it registered. */
  readonly workers = new Map<string, string>();
  private readonly logs: number[] = [];

  private constructor(
    readonly hosts: TestHosts,
    readonly dir: string,
    /** The environment of a client on the `client` host. */
    readonly env: NodeJS.ProcessEnv,
  ) {}

  static async start(options: HostClusterOptions): Promise<HostCluster> {
    const { dir } = options;
    const names = [
      "hub",
      "redis",
      ...Array.from({ length: options.workers }, (_, i) => `w${i + 1}`),
      "client",
    ];
    const hosts = TestHosts.create(names);
    const hub = hosts.address("hub");
    const tokens = { client: join(dir, "client.token"), worker: join(dir, "worker.token") };
    const cluster = new HostCluster(hosts, dir, {
      ...process.env,
      MR_DRIVER: `${hub}:50051`,
      MR_TOKEN_FILE: tokens.client,
    });
    try {
      for (const path of Object.values(tokens))
        writeFileSync(path, randomBytes(24).toString("hex"), { mode: 0o600 });
      await cluster.startAll(options, tokens);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** `mr ARGS…` run on the client host, to its end. */
  mr(args: string[]) {
    return this.hosts.run("client", process.execPath, [MR_BIN, ...args], this.env);
  }

  /** Takes `host`'s link down for `ms`, then brings it back. */
  async cutOff(host: string, ms: number): Promise<void> {
    this.hosts.link(host, false);
    await sleep(ms);
    this.hosts.link(host, true);
  }

  async stop(): Promise<void> {
    await this.hosts.destroy();
    for (const fd of this.logs.splice(0)) closeSync(fd);
  }

  private async startAll(
    options: HostClusterOptions,
    tokens: { client: string; worker: string },
  ): Promise<void> {
    const { hosts, dir } = this;
    const env = { ...process.env, MR_LOG_LEVEL: "debug" };
    const log = (name: string): number => {
      const fd = openSync(join(dir, `${name}.log`), "a");
      this.logs.push(fd);
      return fd;
    };
    const redis = hosts.address("redis");
    await hosts.spawnServer(
      "redis",
      "redis-server",
      ["--bind", redis, "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
      { ready: /Ready to accept connections()/ },
    );
    const driver = `${hosts.address("hub")}:50051`;
    await hosts.spawnServer(
      "hub",
      process.execPath,
      [
        MR_BIN,
        "driver",
        "--listen",
        driver,
        "--db",
        join(dir, "driver.db"),
        "--redis",
        `redis://${redis}:6379`,
        "--client-token-file",
        tokens.client,
        "--worker-token-file",
        tokens.worker,
        "--input-root",
        dir,
        "--output-root",
        dir,
        "--log-format",
        "json",
        ...(options.driverArgs ?? []),
      ],
      { stderr: log("driver"), env },
    );
    for (let i = 1; i <= options.workers; i++) {
      const name = `w${i}`;
      const { address } = await hosts.spawnServer(
        name,
        process.execPath,
        [
          MR_BIN,
          "worker",
          "--listen",
          `${hosts.address(name)}:7001`,
          "--driver",
          driver,
          "--token-file",
          tokens.worker,
          "--data-dir",
          join(dir, name),
          ...(options.appsDir ? ["--apps-dir", options.appsDir] : []),
          "--log-format",
          "json",
        ],
        { stderr: log(name), env },
      );
      this.workers.set(name, address);
    }
  }
}
