// A thin adapter over the CNI plugin binaries (there is no npm CNI client; libcni's rules are few):
// a network list's plugins run in order for ADD, each getting the previous one's result, and in
// reverse for DEL; runtimeConfig goes only to plugins that declare the capability; DEL and CHECK
// get the ADD result as prevResult. Callers keep that result and serialize operations on one
// attachment (BridgeNetwork does both).
import { RuntimeFailure } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { run } from "./exec.js";

export interface CniPlugin {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface CniNetworkList {
  cniVersion: string;
  name: string;
  plugins: CniPlugin[];
}

/** What the runtime says about one attachment (CNI_* env and the capability arguments). */
export interface CniAttachment {
  containerId: string;
  netns: string;
  ifName: string;
  /** `CNI_ARGS` pairs (IgnoreUnknown is always set). */
  args?: Record<string, string>;
  /** runtimeConfig by capability name, e.g. `portMappings`, `ips`. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: unknown[];
  dns?: unknown;
}

export interface CniOptions {
  pluginDir?: string;
  log?: Logger;
  timeoutMs?: number;
}

export class Cni {
  readonly pluginDir: string;
  private readonly log?: Logger;
  private readonly timeoutMs: number;

  constructor(opts: CniOptions = {}) {
    this.pluginDir = opts.pluginDir ?? process.env.BERTH_CNI_PATH ?? "/usr/lib/cni";
    this.log = opts.log;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async add(list: CniNetworkList, att: CniAttachment): Promise<CniResult> {
    let prev: CniResult | undefined;
    for (const p of list.plugins) {
      const out = await this.exec("ADD", list, p, att, prev);
      prev = JSON.parse(out) as CniResult;
    }
    if (!prev) throw new RuntimeFailure("cni", ["ADD"], `network ${list.name} has no plugins`, undefined);
    return prev;
  }

  /** DEL in reverse order. Every plugin is asked even if one fails (DEL must release what it can). */
  async del(list: CniNetworkList, att: CniAttachment, prevResult: CniResult | undefined): Promise<void> {
    let first: unknown;
    for (const p of [...list.plugins].reverse()) {
      await this.exec("DEL", list, p, att, prevResult).catch((err) => { first ??= err; });
    }
    if (first) throw first;
  }

  async check(list: CniNetworkList, att: CniAttachment, prevResult: CniResult): Promise<void> {
    for (const p of list.plugins) await this.exec("CHECK", list, p, att, prevResult);
  }

  private async exec(cmd: "ADD" | "DEL" | "CHECK", list: CniNetworkList, plugin: CniPlugin, att: CniAttachment, prev: CniResult | undefined): Promise<string> {
    if (!/^[a-z0-9_-]{1,64}$/i.test(plugin.type)) throw new RuntimeFailure("cni", [cmd], `invalid plugin type '${plugin.type}'`, undefined);
    const conf: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name };
    const rc: Record<string, unknown> = {};
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
      if (on && att.capabilityArgs?.[cap] !== undefined) rc[cap] = att.capabilityArgs[cap];
    }
    if (Object.keys(rc).length) conf.runtimeConfig = rc;
    if (prev) conf.prevResult = prev;
    const args = Object.entries({ IgnoreUnknown: "1", ...att.args }).map(([k, v]) => `${k}=${v}`).join(";");
    try {
      const { stdout } = await run(`${this.pluginDir}/${plugin.type}`, [], {
        timeoutMs: this.timeoutMs,
        input: JSON.stringify(conf),
        toolName: `cni ${plugin.type}`,
        log: this.log,
        env: {
          CNI_COMMAND: cmd,
          CNI_CONTAINERID: att.containerId,
          CNI_NETNS: att.netns,
          CNI_IFNAME: att.ifName,
          CNI_PATH: this.pluginDir,
          CNI_ARGS: args,
        },
      });
      return stdout;
    } catch (err) {
      if (err instanceof RuntimeFailure) {
        // A plugin reports its error as JSON on stdout: {code, msg, details}. Keep its own words.
        const why = cniMessage(err.stderr);
        throw new RuntimeFailure(`cni ${plugin.type}`, [cmd], why, err.exitCode, { cause: err });
      }
      throw err;
    }
  }
}

function cniMessage(text: string): string {
  try {
    const e = JSON.parse(text) as { msg?: string; details?: string };
    if (e.msg) return e.details ? `${e.msg}: ${e.details}` : e.msg;
  } catch { /* not JSON */ }
  return text;
}
