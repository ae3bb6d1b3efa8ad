// Prometheus metrics of one daemon. Each daemon owns its Registry (never prom-client's global
// one) because tests run several daemons in one process. Model-derived gauges are computed at
// scrape time, so they can never drift from the read model.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ReadModel } from "../projections/read-model.js";
import { LIFECYCLE_STATES } from "../aggregates/container/transitions.js";

export interface Metrics {
  registry: Registry;
  /** Time from a command's arrival to its reply; `code` is "ok" or the error code. */
  commandLatency: Histogram<"subject" | "code">;
  /** HTTP queries answered, by route pattern and status. */
  httpRequests: Counter<"route" | "status">;
}

export function createMetrics(model: ReadModel): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: "berth_containers",
    help: "Containers in the read model, by lifecycle state",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const counts = model.countByState();
      // Every state is reported, zeros included, so a vanished series never means "unknown".
      for (const s of LIFECYCLE_STATES) this.set({ state: s }, counts[s] ?? 0);
    },
  });
  new Gauge({
    name: "berth_log_seq",
    help: "Stream sequence of the last event applied to the read model",
    registers: [registry],
    collect() {
      this.set(model.seq);
    },
  });
  new Gauge({
    name: "berth_transition_anomalies",
    help: "Events in the log that the transition table forbids (should stay 0)",
    registers: [registry],
    collect() {
      this.set(model.anomalies);
    },
  });
  new Counter({
    name: "berth_events_quarantined_total",
    help: "Events of the log that failed validation or the transition table and were not folded",
    registers: [registry],
    collect() {
      // The model's count only grows (and a restart folds the same log to the same count).
      this.reset();
      this.inc(model.quarantinedTotal);
    },
  });
  new Gauge({
    name: "berth_images",
    help: "Images known to the read model, all nodes",
    registers: [registry],
    collect() {
      let n = 0;
      for (const m of model.images.values()) n += m.size;
      this.set(n);
    },
  });

  const commandLatency = new Histogram({
    name: "berth_command_duration_seconds",
    help: "Command handling time, arrival to reply",
    labelNames: ["subject", "code"] as const,
    // Commands wait for the host (runc ≈ 60 ms) and may time out at 30 s.
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const httpRequests = new Counter({
    name: "berth_http_requests_total",
    help: "HTTP requests answered, by route and status",
    labelNames: ["route", "status"] as const,
    registers: [registry],
  });

  return { registry, commandLatency, httpRequests };
}
