/**
 * gRPC health checking (`grpc.health.v1.Health`) and server reflection, on the driver and on
 * every worker, so that load balancers, orchestrators and grpcurl need neither the proto files
 * nor a secret: neither service says more than the public proto does, and neither is guarded.
 * Each process says what SERVING means for it.
 */
import type { Server } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { fileURLToPath } from "node:url";

/** The contract, shipped in the package: `src/` and `dist/` both sit beside `proto/`. */
const PROTO_PATH = fileURLToPath(new URL("../proto/mapreduce.proto", import.meta.url));

export class Health {
  private readonly health: HealthImplementation;
  private serving: boolean | undefined;

  /** `services`: the full names of the services the server offers, such as `mr.v1.JobService`. */
  constructor(private readonly services: readonly string[]) {
    this.health = new HealthImplementation();
    this.set(false);
  }

  /** Adds the health and reflection services to `server`; reflection names only its own services. */
  addTo(server: Server): void {
    this.health.addToServer(server);
    new ReflectionService(loadSync(PROTO_PATH, { keepCase: true }), {
      services: [...this.services],
    }).addToServer(server);
  }

  isServing(): boolean {
    return this.serving === true;
  }

  /** SERVING or NOT_SERVING, for the server as a whole ("") and each of its services. */
  set(serving: boolean): void {
    if (serving === this.serving) return;
    this.serving = serving;
    for (const service of ["", ...this.services]) {
      this.health.setStatus(service, serving ? "SERVING" : "NOT_SERVING");
    }
  }
}
