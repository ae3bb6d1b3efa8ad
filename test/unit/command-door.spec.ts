// The command door judges a refused command once more when this daemon's model was behind the
// log (a client just got its reply from another daemon), but only when the refusal changed nothing.
import { describe, expect, it } from "vitest";
import { NatsCommandService } from "../../src/api/nats-service.js";
import { EventStore } from "../../src/events/store.js";
import { Projector } from "../../src/projections/projector.js";
import { BerthError, ErrorCode } from "../../src/shared/errors.js";
import type { ContainerService } from "../../src/handlers/container-service.js";
import type { ImageService } from "../../src/handlers/image-service.js";
import type { NatsConnection } from "@nats-io/transport-node";

/** An append as the store makes it, against a stand-in for JetStream (only the counting is real). */
const appendOne = () =>
  EventStore.prototype.append.call({ hashAt: async () => null, appendAt: async () => 1 } as unknown as EventStore, "berth.ev.container.x", {} as never, { expectedSeq: 0 });

function door(start: () => Promise<unknown>, behind: boolean[]) {
  const catchUps: boolean[] = [];
  const service = new NatsCommandService({
    nc: {} as NatsConnection,
    containers: { start } as unknown as ContainerService,
    images: {} as ImageService,
    ready: () => true,
    catchUp: async () => {
      const moved = behind.shift() ?? false;
      catchUps.push(moved);
      return moved;
    },
  });
  const send = (body: unknown) => service.dispatch("container.start", new TextEncoder().encode(JSON.stringify(body)));
  return { send, catchUps };
}

const conflict = () => new BerthError(ErrorCode.Conflict, "container web is running");

describe("command door on a model behind the log", () => {
  it("given a refusal on a lagging model, when the model catches up, then the command is judged again and succeeds", async () => {
    let calls = 0;
    const { send, catchUps } = door(async () => {
      if (++calls === 1) throw conflict();
      return { id: "c1", state: "running" };
    }, [true]);
    const reply = await send({ id: "web" });
    expect(reply).toEqual({ ok: true, result: { id: "c1", state: "running" } });
    expect(calls).toBe(2);
    expect(catchUps).toEqual([true]);
  });

  it("given a refusal on a model that was current, then the refusal stands and the command runs once", async () => {
    let calls = 0;
    const { send } = door(async () => {
      calls++;
      throw conflict();
    }, [false]);
    const reply = await send({ id: "web" });
    expect(reply.ok).toBe(false);
    expect(!reply.ok && reply.error.code).toBe(ErrorCode.Conflict);
    expect(calls).toBe(1);
  });

  it("given a refusal after the command appended an event, then it is not judged again (it changed the log)", async () => {
    let calls = 0;
    const { send, catchUps } = door(async () => {
      calls++;
      await appendOne();
      throw conflict();
    }, [true]);
    const reply = await send({ id: "web" });
    expect(!reply.ok && reply.error.code).toBe(ErrorCode.Conflict);
    expect(calls).toBe(1);
    expect(catchUps).toEqual([]);
  });

  it("given an invalid argument, then no catch-up is tried (the model cannot make it valid)", async () => {
    const { send, catchUps } = door(async () => {
      throw new BerthError(ErrorCode.InvalidArgument, "bad");
    }, [true]);
    const reply = await send({ id: "web" });
    expect(!reply.ok && reply.error.code).toBe(ErrorCode.InvalidArgument);
    expect(catchUps).toEqual([]);
  });

  it("given a refusal on a model that moved on by itself before the catch-up was asked, then the command is judged again", async () => {
    // The model is at 5 when the command is judged; the event that makes it valid (6) is folded
    // in while the refusal travels back, so the log has nothing newer by the time it is asked.
    let modelSeq = 5;
    const asked: number[] = [];
    let calls = 0;
    const service = new NatsCommandService({
      nc: {} as NatsConnection,
      containers: {
        start: async () => {
          if (++calls > 1) return { id: "c1", state: "running" };
          modelSeq = 6;
          throw conflict();
        },
      } as unknown as ContainerService,
      images: {} as ImageService,
      ready: () => true,
      seq: () => modelSeq,
      catchUp: async (since) => {
        asked.push(since);
        return modelSeq > since;
      },
    });
    const reply = await service.dispatch("container.start", new TextEncoder().encode(JSON.stringify({ id: "web" })));
    expect(reply).toEqual({ ok: true, result: { id: "c1", state: "running" } });
    expect(asked).toEqual([5]);
    expect(calls).toBe(2);
  });

  it("given a catch-up that fails (the log is away), then the first refusal is the answer", async () => {
    let calls = 0;
    const service = new NatsCommandService({
      nc: {} as NatsConnection,
      containers: { start: async () => { calls++; throw new BerthError(ErrorCode.NotFound, "no container web"); } } as unknown as ContainerService,
      images: {} as ImageService,
      ready: () => true,
      catchUp: async () => { throw new BerthError(ErrorCode.Unavailable, "away"); },
    });
    const reply = await service.dispatch("container.start", new TextEncoder().encode(JSON.stringify({ id: "web" })));
    expect(!reply.ok && reply.error.code).toBe(ErrorCode.NotFound);
    expect(calls).toBe(1);
  });
});

describe("Projector.catchUp", () => {
  const projector = (last: number, at: number) => {
    const p = new Projector({ lastSeq: async () => last } as unknown as EventStore);
    p.model.seq = at;
    return p;
  };
  it("given a model already at the log's end, when asked since an earlier position, then it says it moved", async () => {
    expect(await projector(6, 6).catchUp(1_000, 5)).toBe(true);
  });
  it("given a model at the log's end, when asked since where it is, then it says it did not move", async () => {
    expect(await projector(6, 6).catchUp(1_000)).toBe(false);
  });
  it("given a model behind the log that cannot catch up in time, then the wait fails as unavailable", async () => {
    await expect(projector(7, 6).catchUp(20)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });
});
