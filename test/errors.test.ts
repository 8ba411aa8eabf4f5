/** The errors that cross a boundary, and the gRPC status each becomes. */
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  MrError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "../src/errors.js";
import { toStatus } from "../src/grpc.js";

describe("an error that crosses a boundary", () => {
  it("carries the gRPC code its name says, as @grpc/grpc-js numbers them", () => {
    expect(new InvalidArgumentError("x").code).toBe(status.INVALID_ARGUMENT);
    expect(new NotFoundError("x").code).toBe(status.NOT_FOUND);
    expect(new FailedPreconditionError("x").code).toBe(status.FAILED_PRECONDITION);
    expect(new ResourceExhaustedError("x").code).toBe(status.RESOURCE_EXHAUSTED);
    expect(new UnavailableError("x").code).toBe(status.UNAVAILABLE);
    expect(new MrError("x").code).toBe(status.INTERNAL);
  });

  it("reaches a client with its code and message; anything else as one line of INTERNAL, its stack logged", () => {
    const bugs: Error[] = [];
    expect(toStatus(new NotFoundError("no job 7"), (bug) => bugs.push(bug))).toMatchObject({
      code: status.NOT_FOUND,
      details: "no job 7",
    });
    expect(toStatus(new TypeError("x is undefined\n  at f"), (bug) => bugs.push(bug))).toMatchObject({
      code: status.INTERNAL,
      details: "internal error: x is undefined",
    });
    expect(bugs.map((bug) => bug.message)).toEqual(["x is undefined\n  at f"]);
  });
});
