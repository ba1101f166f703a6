// Starts a real `wharf serve` (all-in-one: API, SFTP and FTPS gateways) on free loopback ports
// with a temporary data directory, for the integration tests. No mocks.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** sdk/typescript, from build-test/helpers/ (compiled) or test/helpers/ (source). */
const packageRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "..", "..");

/** The wharf binary: WHARF_BIN, else the repository's debug build. */
export function wharfBinary(): string {
  const fromEnv = process.env.WHARF_BIN;
  const candidates = fromEnv
    ? [resolve(fromEnv)]
    : [
        resolve(packageRoot, "..", "..", "target", "debug", "wharf"),
        ...(process.env.CARGO_TARGET_DIR
          ? [resolve(process.env.CARGO_TARGET_DIR, "debug", "wharf")]
          : []),
      ];
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      `The wharf binary is missing (looked for ${candidates.join(", ")}). ` +
        "Build it first with `cargo build -p wharf` at the repository root, " +
        "or point WHARF_BIN at a wharf binary.",
    );
  }
  return found;
}

export interface WharfServer {
  baseUrl: string;
  apiKey: string;
  dataDir: string;
  /** What the server printed so far (stdout and stderr), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });
}

/** A range of `count` consecutive free ports (for FTPS passive mode), as "FIRST-LAST". */
async function freePortRange(count: number): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20000 + Math.floor(Math.random() * 30000);
    let free = true;
    for (let port = first; port < first + count && free; port++) free = await portIsFree(port);
    if (free) return `${first}-${first + count - 1}`;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

export async function startWharf(): Promise<WharfServer> {
  const binary = wharfBinary();
  const dataDir = mkdtempSync(join(tmpdir(), "wharf-sdk-test-"));
  const apiKey = `test-${randomBytes(18).toString("hex")}`;
  const [api, sftp, ftps, ftpsImplicit] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const passive = await freePortRange(8);
  const args = [
    "serve",
    "--data-dir",
    dataDir,
    "--api-addr",
    `127.0.0.1:${api}`,
    "--sftp-addr",
    `127.0.0.1:${sftp}`,
    "--ftps-addr",
    `127.0.0.1:${ftps}`,
    "--ftps-implicit-addr",
    `127.0.0.1:${ftpsImplicit}`,
    "--ftps-passive-ports",
    passive,
    // The webhook receivers of these tests listen on loopback.
    "--webhook-allow-private-targets",
  ];
  let output = "";
  const child: ChildProcess = spawn(binary, args, {
    env: { ...process.env, WHARF_ADMIN_API_KEY: apiKey, RUST_LOG: process.env.RUST_LOG ?? "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  let exited: string | undefined;
  const exitPromise = new Promise<void>((done) =>
    child.once("exit", (code, signal) => {
      exited = `exited with ${signal ?? code}`;
      done();
    }),
  );

  const server: WharfServer = {
    baseUrl: `http://127.0.0.1:${api}`,
    apiKey,
    dataDir,
    output: () => output,
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exitPromise;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(`wharf serve ${exited} before it was ready:\n${output}`);
    }
    try {
      const response = await fetch(`${server.baseUrl}/readyz`);
      await response.arrayBuffer();
      if (response.ok) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`wharf serve was not ready within 60 s (GET /readyz):\n${output}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}
