// IPv4 addresses and CIDRs as numbers: what spec checks (pure) and the node's network share.
import { invalid } from "./errors.js";

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export const isIPv4 = (s: unknown): s is string => typeof s === "string" && IPV4_RE.test(s);

export function ipToInt(ip: string): number {
  if (!isIPv4(ip)) throw invalid(`invalid IPv4 address '${String(ip)}'`);
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

export const intToIp = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

export interface Cidr {
  network: number;
  prefix: number;
  broadcast: number;
}

export function parseCidr(s: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(String(s));
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || !isIPv4(m[1]) || !(prefix >= 0 && prefix <= 32)) throw invalid(`invalid CIDR '${String(s)}'`);
  const size = 2 ** (32 - prefix);
  const network = Math.floor(ipToInt(m[1]) / size) * size;
  return { network, prefix, broadcast: network + size - 1 };
}

/** Usable host addresses: all but the network and broadcast addresses. */
export const cidrHosts = (c: Cidr) => ({ first: c.network + 1, last: c.broadcast - 1 });

export const inCidr = (ip: string, c: Cidr) => {
  const n = ipToInt(ip);
  return n >= c.network && n <= c.broadcast;
};
