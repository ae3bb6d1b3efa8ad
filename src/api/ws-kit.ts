// What the terminal WebSocket routes (exec, attach) share: the upgrade's clean-up, refusing with
// an error frame, and reading a control frame (docs/API.md "Exec on a terminal").
import { Type } from "@sinclair/typebox";
import type { WebSocket } from "ws";
import { BerthError, ErrorCode, invalid, toBerthError } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { MAX_BODY_BYTES } from "./nats-service.js";

/**
 * An upgrade refused before the route (401, 503 by the /v1 hooks, which run before
 * @fastify/websocket's own) leaves its raw socket unread and open: close() would wait for it
 * forever. Once the refusal is sent, the socket goes.
 */
export const dropRefusedUpgrade = async (req: { headers: Record<string, unknown>; raw: { socket?: { destroy(): void } | null } }) => {
  if (req.headers.upgrade) req.raw.socket?.destroy();
};

/** A JSON control frame to the client, while the socket is open. */
export const sendFrame = (socket: WebSocket, msg: object) => socket.readyState === socket.OPEN && socket.send(JSON.stringify(msg));

/** `{"type":"error"}`, then close: 1011 for the daemon's or the host's failure, 1008 for a refusal. */
export function refuseWith(socket: WebSocket, log: Logger, what: string): (err: unknown) => void {
  return (err) => {
    const e = toBerthError(err);
    if (!(err instanceof BerthError)) log.error({ err }, `${what} failed`);
    sendFrame(socket, { type: "error", code: e.code, message: e.message });
    socket.close(e.code === ErrorCode.Internal || e.code === ErrorCode.RuntimeError ? 1011 : 1008, e.code);
  };
}

/** A text frame as JSON, bounded like a command body; InvalidArgument otherwise. */
export function parseControl(data: unknown): { type?: unknown } {
  const text = String(data);
  if (text.length > MAX_BODY_BYTES) throw invalid(`control frame of ${text.length} bytes exceeds ${MAX_BODY_BYTES}`);
  try {
    return JSON.parse(text) as { type?: unknown };
  } catch {
    throw invalid("control frame is not valid JSON");
  }
}

/** A terminal's columns or rows. */
export const Size = Type.Integer({ minimum: 1, maximum: 10_000 });
/** `{"type":"resize"}`: the client's window changed. */
export const ResizeFrame = Type.Object({ type: Type.Literal("resize"), cols: Size, rows: Size }, { additionalProperties: false });

/** A binary frame's bytes, however ws delivered them. */
export const frameBytes = (data: unknown): Buffer => (Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]));
