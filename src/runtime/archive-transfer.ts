// A checkpoint archive sent straight from one daemon to another (a migration's "direct"
// transfer). The target asks the source on `berth.fwd.<source>.archive.fetch` (NATS: both
// daemons authenticated with their own users; only daemons may publish on berth.fwd,
// nats-roles.ts). The source, when it has a TCP address to serve on, offers a one-off port and a
// random token in the target's inbox (which only the target's node may read): the target
// connects, proves the token, and then the archive goes tar to tar over that connection, each
// tar holding the socket itself (no JavaScript in the data path: 256 MB in about 0.35 s here,
// where a Node stream on each side took 1.0–1.5 s and NATS frames two). A target that cannot
// connect says so, and the archive comes as numbered NATS frames into its inbox instead, never
// more than WINDOW frames ahead of the target's acks (core NATS has no flow control of its own
// and drops a slow consumer). Either way the source ends with the digest of the files it sent
// (tree-digest.ts), on NATS, which the target compares with the digest of what it unpacked; and
// the source ticks there meanwhile, so that a target notices a source that died.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, connect as tcpConnect, type AddressInfo, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { createInbox, headers, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { BerthError, ErrorCode } from "../shared/errors.js";
import type { ArchiveSink, ArchiveSource } from "../shared/host-facts.js";
import { fault } from "../fault.js";

/** The forwarded verb the source answers (under `berth.fwd.<node>.`). */
export const ARCHIVE_FETCH = "archive.fetch";
const WINDOW = 8;
/** The sender's sign of life while it serves (with or without frames to send). */
const TICK_MS = 1_000;
/** The receiver gives up on a sender silent this long (no frame, no tick: its daemon died). */
const SILENT_MS = 5_000;
/** The sender gives up on a receiver that took no frame for this long. */
const IDLE_MS = 20_000;
/** The longest a send over TCP may take (a receiver that connected and stopped reading). */
const SEND_MS = 600_000;
/** How long an offered port waits for the target's connection before the frames take over. */
const OFFER_MS = 5_000;
const TOKEN_BYTES = 32;
const H = {
  seq: "Berth-Seq", ack: "Berth-Ack", end: "Berth-End", digest: "Berth-Digest", error: "Berth-Error", tick: "Berth-Tick",
  tcp: "Berth-Tcp", token: "Berth-Token",
} as const;
/** What a target sends to the ack subject when it cannot reach the offered port. */
const NO_TCP = "no-tcp";

export interface ServeOptions {
  /** The daemon's inbox prefix (its ack subjects live there). */
  inboxPrefix?: string;
  /** An address of this host the targets can reach: archives go over TCP from a port there. */
  tcpHost?: string;
}

/** One connection on a port of `host` that proves `token` first, or null when none does in time or `refused()` is called. */
async function offerPort(host: string, token: Buffer, announce: (hostPort: string) => void, onRefusal: (refuse: () => void) => void): Promise<Socket | null> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return new Promise<Socket | null>((resolve) => {
    let settled = false;
    const done = (sock: Socket | null) => {
      if (settled) return sock?.destroy();
      settled = true;
      clearTimeout(timer);
      server.close();
      resolve(sock);
    };
    const timer = setTimeout(() => done(null), OFFER_MS);
    onRefusal(() => done(null));
    server.on("connection", (sock) => {
      let got = Buffer.alloc(0);
      sock.setTimeout(OFFER_MS, () => sock.destroy());
      sock.on("error", () => undefined);
      const onData = (c: Buffer) => {
        got = Buffer.concat([got, c]);
        if (got.length < TOKEN_BYTES) return;
        sock.off("data", onData);
        sock.setTimeout(0);
        if (got.length === TOKEN_BYTES && timingSafeEqual(got, token)) done(sock);
        else sock.destroy();
      };
      sock.on("data", onData);
    });
    const a = server.address() as AddressInfo;
    announce(`${host.includes(":") ? `[${host}]` : host}:${a.port}`);
  });
}


/**
 * The source side: the archive `open` gives for this request's checkpoint, sent to the
 * requester (over TCP when `o.tcpHost` is given and the target reaches it, else as NATS frames
 * into its inbox), then its digest; a refusal (`open` throws) goes back as an error frame.
 * Never throws.
 */
export async function serveArchive(nc: NatsConnection, msg: Msg, open: (checkpointId: string, replyTo: string) => ArchiveSource | Promise<ArchiveSource>, o: ServeOptions = {}): Promise<void> {
  const to = msg.reply;
  if (!to) return;
  // A connection closed meanwhile (the daemon stops) ends the transfer; the receiver times out.
  const publish = (subject: string, data: Uint8Array, h: MsgHdrs) => {
    try {
      nc.publish(subject, data, { headers: h });
    } catch {
      // nothing to tell anyone
    }
  };
  const fail = (err: unknown) => {
    const e = err instanceof BerthError ? err : new BerthError(ErrorCode.RuntimeError, (err as Error).message ?? String(err));
    const h = headers();
    h.set(H.error, JSON.stringify(e.toJSON()));
    publish(to, new Uint8Array(0), h);
  };
  let source: ArchiveSource;
  try {
    let body: { checkpointId?: unknown; tcp?: unknown } | null = null;
    try {
      body = msg.json<{ checkpointId?: unknown; tcp?: unknown }>();
    } catch {
      // answered below
    }
    if (typeof body?.checkpointId !== "string") throw new BerthError(ErrorCode.InvalidArgument, "archive.fetch needs a JSON body {checkpointId}");
    source = await open(body.checkpointId, to);
    if (body.tcp === false) o = { ...o, tcpHost: undefined };
  } catch (err) {
    return fail(err);
  }
  const ackTo = createInbox(o.inboxPrefix);
  let acked = 0;
  let wake: (() => void) | null = null;
  let lastAck = Date.now();
  let refuseTcp: (() => void) | null = null;
  const acks: Subscription = nc.subscribe(ackTo, {
    callback: (_err, m) => {
      const s = m.string();
      if (s === NO_TCP) return refuseTcp?.();
      acked = Math.max(acked, Number(s) || 0);
      lastAck = Date.now();
      wake?.();
    },
  });
  const frame = Math.max(64 * 1024, nc.info!.max_payload - 4096);
  const tick = setInterval(() => {
    const h = headers();
    h.set(H.tick, "1");
    publish(to, new Uint8Array(0), h);
  }, TICK_MS);
  let seq = 0;
  const send = async (chunk: Buffer) => {
    // At most WINDOW frames unacknowledged; a target that stops acking ends it.
    while (seq - acked >= WINDOW) {
      if (Date.now() - lastAck > IDLE_MS) throw new BerthError(ErrorCode.Timeout, `the archive's receiver stopped acknowledging for ${IDLE_MS} ms`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 1_000).unref();
      });
      wake = null;
    }
    seq += 1;
    const h = headers();
    h.set(H.seq, String(seq));
    if (seq === 1) h.set(H.ack, ackTo);
    nc.publish(to, chunk, { headers: h });
    if (seq === 1) await nc.flush().then(() => fault("migrate-serving"));
  };
  const abort = new AbortController();
  const sendTimer = setTimeout(() => abort.abort(new BerthError(ErrorCode.Timeout, `the archive's send took longer than ${SEND_MS} ms`)), SEND_MS);
  let sock: Socket | null = null;
  // The digest of the files, read while they are sent (from the page cache, on another core).
  const digest = source.digest();
  digest.catch(() => undefined);
  try {
    await nc.flush();
    if (o.tcpHost) {
      const token = randomBytes(TOKEN_BYTES);
      sock = await offerPort(o.tcpHost, token, (hostPort) => {
        const h = headers();
        h.set(H.tcp, hostPort);
        h.set(H.token, token.toString("hex"));
        h.set(H.ack, ackTo);
        publish(to, new Uint8Array(0), h);
      }, (refuse) => (refuseTcp = refuse)).catch(() => null); // no port here (an address not of this host): frames
    }
    if (sock) {
      const sent = source.sendTo(sock, abort.signal);
      setImmediate(() => fault("migrate-serving"));
      await sent.catch((err: Error) => {
        throw new BerthError(ErrorCode.RuntimeError, `the archive could not be sent: ${err.message}`);
      });
    } else {
      const data = source.stream();
      abort.signal.addEventListener("abort", () => data.destroy(abort.signal.reason as Error));
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      try {
        for await (const c of data as AsyncIterable<Buffer>) {
          pending.push(c);
          pendingBytes += c.length;
          while (pendingBytes >= frame) {
            const all = Buffer.concat(pending);
            await send(all.subarray(0, frame));
            pending = [all.subarray(frame)];
            pendingBytes = pending[0].length;
          }
        }
        if (pendingBytes) await send(Buffer.concat(pending));
      } finally {
        data.destroy();
      }
    }
    const h = headers();
    h.set(H.seq, String(seq + 1));
    h.set(H.end, "1");
    h.set(H.digest, await digest);
    nc.publish(to, new Uint8Array(0), { headers: h });
    await nc.flush();
  } catch (err) {
    abort.abort();
    sock?.destroy();
    fail(err);
  } finally {
    clearTimeout(sendTimer);
    clearInterval(tick);
    acks.unsubscribe();
  }
}

const errorOf = (h: MsgHdrs | undefined): BerthError | null => {
  if (!h) return null;
  if (h.code === 503) return new BerthError(ErrorCode.Unavailable, "no daemon answers for the archive (its node's daemon is down)");
  const raw = h.get(H.error);
  if (!raw) return null;
  try {
    const e = JSON.parse(raw) as { code?: ErrorCode; message?: string };
    return new BerthError(e.code && e.code in ErrorCode ? e.code : ErrorCode.RuntimeError, e.message ?? raw);
  } catch {
    return new BerthError(ErrorCode.RuntimeError, raw);
  }
};

/** `host:port` or `[v6]:port`. */
function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  return m ? { host: m[1] ?? m[2], port: Number(m[3]) } : null;
}

/**
 * The target side: checkpoint `checkpointId` from the daemon answering on `subject`, into `sink`
 * (straight from the offered socket, or from the frames); resolves once it is unpacked and its
 * digest is the sender's. Rejects on a refusal, a gap, a silent sender, a broken connection, a
 * failed unpack or a digest that differs, once the unpacking tool has stopped. `tcp: false`:
 * frames only (a port offered is not taken).
 */
export async function fetchArchive(nc: NatsConnection, subject: string, checkpointId: string, sink: ArchiveSink, o: { inboxPrefix?: string; tcp?: boolean } = {}): Promise<void> {
  const inbox = createInbox(o.inboxPrefix);
  const abort = new AbortController();
  let unpacked: Promise<void> | null = null;
  let frames: PassThrough | null = null;
  let next = 1;
  let ackTo: string | null = null;
  let idle: NodeJS.Timeout | null = null;
  let settle!: { resolve: () => void; reject: (e: Error) => void };
  const result = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const sub = nc.subscribe(inbox);
  let over = false;
  const end = (err: BerthError | null) => {
    if (over) return;
    over = true;
    if (idle) clearTimeout(idle);
    sub.unsubscribe();
    if (err) {
      abort.abort(err);
      frames?.destroy(err);
      settle.reject(err);
    } else settle.resolve();
  };
  const arm = () => {
    if (idle) clearTimeout(idle);
    idle = setTimeout(() => end(new BerthError(ErrorCode.Timeout, `the archive's sender was silent for ${SILENT_MS} ms`)), SILENT_MS);
  };
  /** The unpacking, once begun: its failure ends the transfer. */
  const unpack = (p: Promise<void>) => {
    unpacked = p;
    p.catch((err: unknown) => end(err instanceof BerthError ? err : new BerthError(ErrorCode.RuntimeError, `the archive could not be unpacked: ${(err as Error).message}`)));
  };
  /** The offered port: the bytes go from there into the sink (a failure to connect is told to the source, whose frames follow). */
  const connectTo = (hostPort: string, token: Buffer, ack: string) => {
    const at = splitHostPort(hostPort);
    if (!at || token.length !== TOKEN_BYTES) return end(new BerthError(ErrorCode.RuntimeError, `the archive's sender offered a bad port '${hostPort}'`));
    const s = tcpConnect(at);
    // Nothing is read here: the bytes are the unpacking tool's (paused before the connect, Node
    // does not start reading at it).
    s.pause();
    s.once("connect", () => {
      s.off("error", notReached);
      s.write(token, (err) => {
        if (err || over) return s.destroy();
        unpack(sink.fromSocket(s, abort.signal));
        setImmediate(() => fault("migrate-fetching"));
      });
    });
    const notReached = () => {
      // Not reachable from here: the frames then.
      s.destroy();
      nc.publish(ack, NO_TCP);
    };
    s.once("error", notReached);
  };
  void (async () => {
    arm();
    for await (const m of sub) {
      arm();
      const err = errorOf(m.headers);
      if (err) return end(err);
      if (m.headers?.get(H.tick)) continue;
      const offer = m.headers?.get(H.tcp);
      if (offer) {
        connectTo(offer, Buffer.from(m.headers!.get(H.token), "hex"), m.headers!.get(H.ack));
        continue;
      }
      const seq = Number(m.headers?.get(H.seq));
      if (seq !== next) return end(new BerthError(ErrorCode.RuntimeError, `the archive's frame ${next} is missing (got ${seq})`));
      next += 1;
      ackTo ??= m.headers?.get(H.ack) || null;
      if (m.headers?.get(H.end)) {
        // The last bytes may still be on their way into the tool (over TCP, or from the frames).
        frames?.end();
        if (idle) clearTimeout(idle);
        if (!unpacked) return end(new BerthError(ErrorCode.RuntimeError, `checkpoint archive ${checkpointId} came empty`));
        await unpacked;
        if (over) return;
        const digest = await sink.digest();
        if (digest !== m.headers?.get(H.digest)) return end(new BerthError(ErrorCode.RuntimeError, `checkpoint archive ${checkpointId} is damaged: the digest of what was unpacked differs from the sender's`));
        return end(null);
      }
      if (!frames) {
        frames = new PassThrough();
        frames.on("error", () => undefined);
        unpack(sink.fromStream(frames, abort.signal));
      }
      if (!frames.write(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength))) {
        // The sender waits for our ack meanwhile: its silence is ours.
        if (idle) clearTimeout(idle);
        await new Promise((r) => frames!.once("drain", r));
        arm();
      }
      if (over) return;
      if (ackTo) nc.publish(ackTo, String(seq));
      if (seq === 1) fault("migrate-fetching");
    }
  })().catch((err: unknown) => end(err instanceof BerthError ? err : new BerthError(ErrorCode.RuntimeError, (err as Error).message)));
  nc.publish(subject, JSON.stringify({ checkpointId, ...(o.tcp === false ? { tcp: false } : {}) }), { reply: inbox });
  try {
    await result;
  } finally {
    // Whatever the outcome, the unpacking tool has stopped before the caller touches the dir.
    await (unpacked as Promise<void> | null)?.catch(() => undefined);
  }
}
