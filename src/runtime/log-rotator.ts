// Keeps every container's log within its cap: a slow poll stats each `ctr.log` (one syscall per
// container) and rotates the ones that reached their size (log-files.ts says how, and why the
// daemon does it rather than conmon). A file can pass its cap by what the container writes in
// one interval; lines are never lost or written twice by a rotation.
import { readdir, readFile, stat } from "node:fs/promises";
import type { Logger } from "../log.js";
import { rotate, type LogPolicy } from "./log-files.js";
import { CONTAINER_ID_RE, type Paths } from "./paths.js";

/** Docker's `local` driver: 5 files of 20 MB. */
export const DEFAULT_LOG_POLICY: LogPolicy = { maxSizeBytes: 20 * 1024 * 1024, maxFiles: 5 };

export class LogRotator {
  /** A container's own policy (its spec's `log`), read once from its log.json. */
  private readonly policies = new Map<string, LogPolicy>();
  private running = false;

  constructor(
    private readonly paths: Paths,
    private readonly defaults: LogPolicy,
    private readonly log: Logger,
  ) {}

  start(intervalMs = 1000): () => void {
    const timer = setInterval(() => void this.check(), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** One pass over every container's log. Never throws: a failed rotation is logged and retried. */
  async check(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const ids = (await readdir(this.paths.containersDir).catch(() => [] as string[])).filter((d) => CONTAINER_ID_RE.test(d));
      for (const id of this.policies.keys()) if (!ids.includes(id)) this.policies.delete(id);
      await Promise.all(ids.map((id) => this.checkOne(id)));
    } finally {
      this.running = false;
    }
  }

  private async checkOne(id: string): Promise<void> {
    const cp = this.paths.container(id);
    const size = (await stat(cp.log).catch(() => null))?.size;
    if (size === undefined) return;
    const p = await this.policy(id);
    if (size < p.maxSizeBytes) return;
    try {
      const reopened = await rotate(cp.log, cp.ctlFifo, p.maxFiles);
      this.log.debug({ id, size, reopened }, "container log rotated");
    } catch (err) {
      this.log.warn({ err, id }, "container log rotation failed");
    }
  }

  private async policy(id: string): Promise<LogPolicy> {
    let p = this.policies.get(id);
    if (!p) {
      const own = await readFile(this.paths.container(id).logPolicy, "utf8").then((t) => JSON.parse(t) as Partial<LogPolicy>, () => ({}));
      p = { ...this.defaults, ...own };
      this.policies.set(id, p);
    }
    return p;
  }
}
