// `GET /v1/containers/{ref}/exec` as a WebSocket: a terminal exec session between `berth exec
// -it` and the daemon (docs/API.md "Exec on a terminal"). Text frames are JSON control messages,
// binary frames the terminal's bytes:
//   client → server  {"type":"start", cmd, env?, user?, workdir?, timeoutSec?, cols, rows, meta?}  first, once
//   client → server  {"type":"resize", cols, rows}          the client's window changed
//   server → client  {"type":"started", execId}             ContainerExecStarted is in the log
//   server → client  {"type":"exit", exitCode}              then a normal close (1000)
//   server → client  {"type":"error", code, message}        then close 1008 (refused) or 1011
// The client closing the socket ends the process. Auth and readiness are the /v1 hooks of http.ts.
import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { invalid } from "../shared/errors.js";
import type { ExecService, TtySession } from "../handlers/exec-service.js";
import { logger } from "../log.js";
import { ExecFields, Meta, validator } from "./schemas.js";
import { dropRefusedUpgrade, frameBytes, parseControl, refuseWith, ResizeFrame, sendFrame, Size } from "./ws-kit.js";

export const StartFrame = Type.Object(
  {
    type: Type.Literal("start"),
    cmd: ExecFields.cmd,
    env: ExecFields.env,
    user: ExecFields.user,
    workdir: ExecFields.workdir,
    timeoutSec: ExecFields.timeoutSec,
    cols: Size,
    rows: Size,
    meta: Type.Optional(Meta),
  },
  { additionalProperties: false },
);
export type StartFrame = Static<typeof StartFrame>;

/** Output waiting for a slow client beyond this pauses the process's terminal until it drains. */
const HIGH_WATER = 1024 * 1024;
/** A client that sends no start frame within this is dropped. */
const START_WITHIN_MS = 10_000;

const log = logger("api.exec");

export function registerExecRoute(api: FastifyInstance, exec: ExecService, v1: Record<string, unknown>): void {
  const start = validator(StartFrame);
  const resize = validator(ResizeFrame);
  api.get(
    "/v1/containers/:ref/exec",
    {
      websocket: true,
      onResponse: dropRefusedUpgrade,
      schema: { ...v1, tags: ["containers"], description: "WebSocket: a command on a terminal in a running container (docs/API.md)" },
    },
    (socket: WebSocket, req) => {
      const ref = (req.params as { ref: string }).ref;
      let session: TtySession | null = null;
      let closed = false;
      const send = (msg: object) => sendFrame(socket, msg);
      const refuse = refuseWith(socket, log, "terminal exec");
      const startTimer = setTimeout(() => refuse(invalid("no start frame")), START_WITHIN_MS);
      socket.on("close", () => {
        closed = true;
        clearTimeout(startTimer);
        // The client went away (or hung up): so does its process.
        void session?.process.kill();
      });
      socket.on("message", (data, isBinary) => {
        if (isBinary) {
          session?.process.write(frameBytes(data));
          return;
        }
        let msg: { type?: unknown };
        try {
          msg = parseControl(data);
        } catch (err) {
          return refuse(err);
        }
        const type = msg?.type;
        if (type === "resize") {
          try {
            const r = resize(msg);
            session?.process.resize(r.cols, r.rows);
          } catch (err) {
            refuse(err);
          }
          return;
        }
        if (type !== "start" || session) return refuse(invalid(session ? "the session has started already" : "the first frame must be {\"type\":\"start\"}"));
        clearTimeout(startTimer);
        void (async () => {
          const f = start(msg);
          const s = await exec.openTty({ id: ref, cmd: f.cmd, env: f.env, user: f.user, workdir: f.workdir, timeoutSec: f.timeoutSec, cols: f.cols, rows: f.rows }, f.meta);
          session = s;
          if (closed) return void s.process.kill();
          send({ type: "started", execId: s.execId });
          let waiting = 0;
          let paused = false;
          s.process.onData((chunk) => {
            if (socket.readyState !== socket.OPEN) return;
            waiting += chunk.length;
            if (waiting > HIGH_WATER && !paused) {
              paused = true;
              s.process.pause();
            }
            socket.send(chunk, { binary: true }, () => {
              waiting -= chunk.length;
              if (paused && waiting < HIGH_WATER / 2) {
                paused = false;
                s.process.resume();
              }
            });
          });
          const exitCode = await s.done;
          send({ type: "exit", exitCode });
          socket.close(1000, "exited");
        })().catch(refuse);
      });
    },
  );
}
