/**
 * TLS and mutual TLS for every connection, with grpc-js's own credentials. A process is given
 * PEM files: its certificate and key (`--tls-cert`, `--tls-key`), and the CA it trusts
 * (`--tls-ca`). A server with a CA asks every client for a certificate that CA signed; a
 * client with a CA speaks TLS and checks the server's certificate against it.
 */
import { ServerCredentials, credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { InvalidArgumentError, toError } from "./errors.js";

/** The files, as flags or MR_TLS_CERT, MR_TLS_KEY and MR_TLS_CA give them. */
export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

export interface Tls {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/** The files' contents; undefined when none is given (plaintext). */
export function readTls(files: TlsFiles): Tls | undefined {
  if (files.cert === undefined && files.key === undefined && files.ca === undefined) return undefined;
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new InvalidArgumentError("give --tls-cert and --tls-key together (a certificate and its key)");
  }
  const read = (path: string | undefined, flag: string): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new InvalidArgumentError(
        `${flag}: cannot read ${path}: ${toError(err).message} (give a PEM file)`,
      );
    }
  };
  return {
    cert: read(files.cert, "--tls-cert"),
    key: read(files.key, "--tls-key"),
    ca: read(files.ca, "--tls-ca"),
  };
}

/** The files named by the environment, under the flags given. */
export function tlsFiles(flags: TlsFiles, env: Readonly<Record<string, string | undefined>>): TlsFiles {
  return {
    cert: flags.cert ?? env.MR_TLS_CERT,
    key: flags.key ?? env.MR_TLS_KEY,
    ca: flags.ca ?? env.MR_TLS_CA,
  };
}

/** A server's credentials: plaintext without TLS; with a CA, clients must show a certificate it signed. */
export function serverCredentials(tls: Tls | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  if (tls.cert === undefined || tls.key === undefined) {
    throw new InvalidArgumentError("a TLS server needs --tls-cert and --tls-key (its certificate and key)");
  }
  return ServerCredentials.createSsl(
    tls.ca ?? null,
    [{ cert_chain: tls.cert, private_key: tls.key }],
    tls.ca !== undefined,
  );
}

/** A client's credentials: plaintext without TLS; else TLS, with its certificate if it has one. */
export function channelCredentials(tls: Tls | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}
