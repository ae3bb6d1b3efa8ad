// `GET /v1/containers/{ref}/attach` as a WebSocket: a client on a container's own terminal
// (`berth run -it`, `berth attach`), framed as the exec route is (docs/API.md "Attach"):
//   client → server  {"type":"attach", cols, rows, start?, meta?}   first, once
//   client → server  {"type":"resize", cols, rows}
//   server → client  {"type":"attached", id}      from here on, binary frames both ways
//   server → client  {"type":"exit", exitCode}    the container ended; then a normal close (1000)
//   server → client  {"type":"error", code, message}   then close 1008 (refused) or 1011
// The client closing the socket detaches; the container runs on.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { invalid } from "../shared/errors.js";
import type { AttachService, AttachSession } from "../handlers/attach-service.js";
import { logger } from "../log.js";
import { Meta, validator } from "./schemas.js";
import { dropRefusedUpgrade, frameBytes, parseControl, refuseWith, ResizeFrame, sendFrame, Size } from "./ws-kit.js";

const AttachFrame = Type.Object(
  { type: Type.Literal("attach"), cols: Size, rows: Size, start: Type.Optional(Type.Boolean()), meta: Type.Optional(Meta) },
  { additionalProperties: false },
);

/**
 * conmon cannot be paused from here (it writes to its clients until they read): a client that
 * lets this much output wait is detached rather than held in the daemon's memory.
 */
const MAX_WAITING = 8 * 1024 * 1024;
const ATTACH_WITHIN_MS = 10_000;

const log = logger("api.attach");

export function registerAttachRoute(api: FastifyInstance, attach: AttachService, v1: Record<string, unknown>): void {
  const first = validator(AttachFrame);
  const resize = validator(ResizeFrame);
  api.get(
    "/v1/containers/:ref/attach",
    {
      websocket: true,
      onResponse: dropRefusedUpgrade,
      schema: { ...v1, tags: ["containers"], description: "WebSocket: a client on a container's own terminal, optionally starting it (docs/API.md)" },
    },
    (socket: WebSocket, req) => {
      const ref = (req.params as { ref: string }).ref;
      let session: AttachSession | null = null;
      let asked = false;
      let closed = false;
      const refuse = refuseWith(socket, log, "attach");
      const timer = setTimeout(() => refuse(invalid("no attach frame")), ATTACH_WITHIN_MS);
      socket.on("close", () => {
        closed = true;
        clearTimeout(timer);
        session?.close();
      });
      socket.on("message", (data, isBinary) => {
        if (isBinary) {
          if (session?.stdin) session.console.write(frameBytes(data));
          return;
        }
        let msg: { type?: unknown };
        try {
          msg = parseControl(data);
          if (msg?.type === "resize") {
            const r = resize(msg);
            void session?.console.resize(r.cols, r.rows);
            return;
          }
          if (msg?.type !== "attach" || asked) throw invalid(asked ? "attached already" : 'the first frame must be {"type":"attach"}');
        } catch (err) {
          return refuse(err);
        }
        asked = true;
        clearTimeout(timer);
        void (async () => {
          const f = first(msg);
          const s = await attach.attach({ id: ref, start: f.start, cols: f.cols, rows: f.rows }, f.meta);
          session = s;
          if (closed) return s.close();
          sendFrame(socket, { type: "attached", id: s.containerId });
          s.console.onData((chunk) => {
            if (socket.readyState !== socket.OPEN) return;
            if (socket.bufferedAmount > MAX_WAITING) return refuse(invalid("the client reads too slowly: detached"));
            socket.send(chunk, { binary: true });
          });
          const exitCode = await s.exit;
          // Queued output first: send() keeps order, and close() waits for what is buffered.
          sendFrame(socket, { type: "exit", exitCode });
          socket.close(1000, "exited");
        })().catch(refuse);
      });
    },
  );
}
