// A stream or bucket made on a JetStream cluster that cannot place it yet: a cluster just
// started (its meta leader lacks a server's stats for a moment: "no suitable peers for
// placement"), one electing a leader ("JetStream system temporarily unavailable"), or one with a
// server down, where a create of 3 replicas now and then gets no answer in time (measured here:
// 6 of 25 timed out, the others took 0.1-5 s). The daemon waits for it, saying so, instead of
// failing its start; every other error fails at once. A create that timed out may have been
// done: each `make` here looks before it creates.
import pRetry from "p-retry";
import { JetStreamApiError } from "@nats-io/jetstream";
import type { Logger } from "../log.js";

/** nats-server's codes: no suitable peers (10005), cluster not active (10006), not available (10008), insufficient resources (10023). */
const NOT_PLACEABLE_YET = new Set([10005, 10006, 10008, 10023]);

export function notPlaceableYet(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return NOT_PLACEABLE_YET.has(err.code);
  // nats.js's TimeoutError: the JetStream API request got no answer.
  if ((err as Error)?.name === "TimeoutError") return true;
  return /no suitable peers|temporarily unavailable|insufficient resources/i.test((err as Error)?.message ?? "");
}

/** `make()` again (every 0.2 s to 2 s) for as long as the cluster cannot place what it makes. */
export function whenPlaceable<T>(what: string, make: () => Promise<T>, log: Logger, o: { signal?: AbortSignal } = {}): Promise<T> {
  return pRetry(make, {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 200,
    maxTimeout: 2_000,
    signal: o.signal,
    shouldRetry: ({ error }) => notPlaceableYet(error),
    onFailedAttempt: ({ error, attemptNumber }) => {
      if (notPlaceableYet(error)) log.warn({ what, attempt: attemptNumber, err: error.message }, "the JetStream cluster cannot place it yet; waiting");
    },
  });
}
