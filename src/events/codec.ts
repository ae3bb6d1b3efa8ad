// Events on the wire are UTF-8 JSON of the envelope (API.md). Decoding checks the envelope's
// shape so that a foreign message on a berth subject cannot poison the read model.
import type { BerthEvent } from "./types.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeEvent(e: BerthEvent): Uint8Array {
  return enc.encode(JSON.stringify(e));
}

export class UndecodableEvent extends Error {
  override name = "UndecodableEvent";
}

export function decodeEvent(data: Uint8Array): BerthEvent {
  let o: unknown;
  try {
    o = JSON.parse(dec.decode(data));
  } catch (err) {
    throw new UndecodableEvent("event is not JSON", { cause: err });
  }
  const e = o as Partial<BerthEvent>;
  if (!e || typeof e !== "object" || typeof e.type !== "string" || typeof e.eventId !== "string" || typeof e.v !== "number") {
    throw new UndecodableEvent("event lacks type, v or eventId");
  }
  return e as BerthEvent;
}
