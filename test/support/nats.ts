// A real nats-server per suite: own port, own temp store dir, stopped by its pid.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { natsServerBinary } from "../../src/runtime/nats-server.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export interface TestNats {
  url: string;
  port: number;
  child: ChildProcess;
  dir: string;
  connect(): Promise<NatsConnection>;
  /** kill -9 the server (its store stays). */
  kill(): Promise<void>;
  /** Start it again on the same port and store. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startNats(): Promise<TestNats> {
  const dir = await mkdtemp(join(tmpdir(), "berth-nats-"));
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const launch = async () => {
    const child = spawn(natsServerBinary(), ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        const nc = await connect({ servers: url, reconnect: false });
        await nc.close();
        return child;
      } catch (err) {
        if (Date.now() > end || child.exitCode !== null) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const halt = async (child: ChildProcess, signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await gone;
  };
  const t: TestNats = {
    url,
    port,
    child: await launch(),
    dir,
    connect: () => connect({ servers: url }),
    kill: () => halt(t.child, "SIGKILL"),
    async restart() {
      t.child = await launch();
    },
    async stop() {
      await halt(t.child, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
  return t;
}
