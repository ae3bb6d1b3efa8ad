// runc, always with this data root's `--root`. Facts only: state, list; verbs that fail because
// the container is already gone say so by their return value instead of throwing.
import { access } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeFailure } from "../errors.js";
import { checkId } from "./paths.js";
import type { Logger } from "../log.js";
import { isNotExist, run, toolPaths } from "./exec.js";
import type { RuncState } from "./types.js";

const TIMEOUT_MS = 30_000;

interface RawState {
  id: string;
  status: RuncState["status"];
  pid: number;
  bundle: string;
  created: string;
}

const toState = (s: RawState): RuncState => ({
  id: s.id,
  status: s.status,
  pid: s.pid,
  bundle: s.bundle,
  created: s.created,
});

export interface RuncOptions {
  root: string;
  runcPath?: string;
  log: Logger;
}

export class Runc {
  readonly root: string;
  readonly path: string;
  private readonly log: Logger;

  constructor(opts: RuncOptions) {
    this.root = opts.root;
    this.path = opts.runcPath ?? toolPaths.runc;
    this.log = opts.log;
  }

  /** Global flags conmon must pass to runc too, so both talk about the same containers. */
  get globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  private run(args: string[]) {
    return run(this.path, [...this.globalArgs, ...args], { timeoutMs: TIMEOUT_MS, log: this.log, toolName: "runc" });
  }

  /**
   * runc keeps each container's state in `<root>/<id>/` from create until delete. No dir, no
   * container: answering that without exec'ing runc saves ~10 ms per fresh start and cleanup.
   */
  private async known(id: string): Promise<boolean> {
    return access(join(this.root, checkId(id))).then(() => true, () => false);
  }

  async state(id: string): Promise<RuncState | null> {
    if (!(await this.known(id))) return null;
    try {
      const { stdout } = await this.run(["state", id]);
      return toState(JSON.parse(stdout) as RawState);
    } catch (err) {
      if (isNotExist(err)) return null;
      throw err;
    }
  }

  async list(): Promise<RuncState[]> {
    const { stdout } = await this.run(["list", "--format", "json"]);
    // runc prints `null` for an empty root.
    const arr = (JSON.parse(stdout || "null") as RawState[] | null) ?? [];
    return arr.map(toState);
  }

  async start(id: string): Promise<void> {
    await this.run(["start", id]);
  }

  /** false when there was nothing to signal (gone, or not running any more). */
  async kill(id: string, signal: string | number, all = false): Promise<boolean> {
    if (!(await this.known(id))) return false;
    try {
      await this.run(["kill", ...(all ? ["--all"] : []), id, String(signal)]);
      return true;
    } catch (err) {
      if (isNotExist(err) || (err instanceof RuntimeFailure && /not running|process already finished/i.test(err.stderr))) {
        return false;
      }
      throw err;
    }
  }

  async pause(id: string): Promise<void> {
    await this.run(["pause", id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(["resume", id]);
  }

  /** Idempotent: a container that does not exist is already deleted. */
  async delete(id: string, force = false): Promise<void> {
    if (!(await this.known(id))) return;
    try {
      await this.run(["delete", ...(force ? ["--force"] : []), id]);
    } catch (err) {
      if (isNotExist(err)) return;
      throw err;
    }
  }
}
