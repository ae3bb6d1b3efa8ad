// The pure rules of bridge networking: addresses, the spec's network, -p, the container's files,
// and what a new container's network asks of its node.
import { describe, expect, it } from "vitest";
import { cidrHosts, intToIp, ipToInt, isIPv4, parseCidr } from "../../src/shared/ip.js";
import { checkNetwork, portsOverlap } from "../../src/shared/spec-rules.js";
import { hostnameFor, networkMode } from "../../src/shared/spec.js";
import { parsePublish, parseRunArgs } from "../../src/cli/args.js";
import { hostsFile, resolvConf } from "../../src/runtime/etc-files.js";
import { checkNetworkRequest } from "../../src/handlers/network-checks.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { NetworkPort } from "../../src/handlers/ports.js";
import { BerthError } from "../../src/shared/errors.js";

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as BerthError).code;
  }
  return "ok";
};

describe("IPv4 and CIDRs", () => {
  it("given dotted quads, then only four octets of 0-255 are addresses", () => {
    expect(["10.89.3.7", "0.0.0.0", "255.255.255.255"].every(isIPv4)).toBe(true);
    expect(["10.89.3", "10.89.3.256", "010.1.1.1x", "a.b.c.d", "", "1.2.3.4/24"].some(isIPv4)).toBe(false);
  });
  it("given a CIDR, then its network, broadcast and host range", () => {
    const c = parseCidr("10.89.3.77/24");
    expect(intToIp(c.network)).toBe("10.89.3.0");
    expect(intToIp(c.broadcast)).toBe("10.89.3.255");
    const h = cidrHosts(c);
    expect([intToIp(h.first), intToIp(h.last)]).toEqual(["10.89.3.1", "10.89.3.254"]);
    expect(ipToInt("10.89.3.1")).toBe(h.first);
    expect(code(() => parseCidr("10.89.3.0/33"))).toBe("InvalidArgument");
  });
});

describe("the spec's network", () => {
  it("given no mode, then bridge rules apply; an old spec without network is none", () => {
    expect(code(() => checkNetwork({ ip: "10.89.3.4", ports: [{ hostPort: 80, containerPort: 80 }] }))).toBe("ok");
    expect(networkMode({})).toBe("none");
    expect(networkMode({ network: { mode: "bridge" } })).toBe("bridge");
  });
  it("given an IP or ports with none or host, then InvalidArgument", () => {
    expect(code(() => checkNetwork({ mode: "none", ip: "10.89.3.4" }))).toBe("InvalidArgument");
    expect(code(() => checkNetwork({ mode: "host", ports: [{ hostPort: 80, containerPort: 80 }] }))).toBe("InvalidArgument");
  });
  it("given two publications of one host port whose addresses overlap, then they collide", () => {
    expect(portsOverlap({ hostPort: 80 }, { hostPort: 80, hostIp: "127.0.0.1" })).toBe(true);
    expect(portsOverlap({ hostPort: 80, hostIp: "127.0.0.1" }, { hostPort: 80, hostIp: "127.0.0.2" })).toBe(false);
    expect(portsOverlap({ hostPort: 80, protocol: "udp" }, { hostPort: 80 })).toBe(false);
    expect(code(() => checkNetwork({ ports: [{ hostPort: 80, containerPort: 1 }, { hostPort: 80, containerPort: 2, hostIp: "127.0.0.1" }] }))).toBe("InvalidArgument");
  });
  it("given a name that is no DNS label, then the hostname is made one", () => {
    expect(hostnameFor({}, "web")).toBe("web");
    expect(hostnameFor({}, "my_db.v2")).toBe("my-db-v2");
    expect(hostnameFor({ hostname: "h1" }, "web")).toBe("h1");
    expect(hostnameFor({}, "_")).toBe("berth");
  });
});

describe("-p", () => {
  it("given docker's forms, then port mappings", () => {
    expect(parsePublish("8080:80")).toEqual({ hostPort: 8080, containerPort: 80 });
    expect(parsePublish("127.0.0.1:8080:80/udp")).toEqual({ hostPort: 8080, containerPort: 80, protocol: "udp", hostIp: "127.0.0.1" });
    expect(() => parsePublish("80")).toThrow(/hostPort:containerPort/);
    expect(() => parsePublish("0:80")).toThrow(/1-65535/);
    expect(() => parsePublish("8080:80/sctp")).toThrow();
  });
  it("given run -p --ip --hostname, then the spec's network", () => {
    expect(parseRunArgs(["-p", "127.0.0.1:9090:90", "--ip", "10.89.3.9", "--hostname", "h", "busybox", "true"])).toMatchObject({
      network: { mode: "bridge", ip: "10.89.3.9", ports: [{ hostPort: 9090, containerPort: 90, hostIp: "127.0.0.1" }] },
      hostname: "h",
    });
  });
});

describe("the container's /etc files", () => {
  it("given an IP, then hosts maps it to the hostname and the name", () => {
    expect(hostsFile({ hostname: "web", ip: "10.89.3.7", aliases: ["web_1"] })).toBe("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.89.3.7\tweb web_1\n");
    expect(hostsFile({ hostname: "web", ip: null })).not.toContain("web");
  });
  it("given the host's resolv.conf, then loopback nameservers are dropped, docker's fallback when none is left", () => {
    expect(resolvConf("search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n")).toBe("search lan\nnameserver 10.0.0.2\noptions edns0\n");
    expect(resolvConf("nameserver 127.0.0.53\n")).toBe("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
  });
});

describe("a new container's network against its node", () => {
  const port = (over: Partial<NetworkPort> = {}): NetworkPort => ({
    checkIp: (ip) => {
      if (!ip.startsWith("10.89.3.")) throw new BerthError("InvalidArgument" as never, "outside");
    },
    leased: async () => new Set(["10.89.3.50"]),
    hostPortFree: async (p) => p.hostPort !== 9999,
    ...over,
  });
  const other = (over: Partial<ContainerState>): ContainerState =>
    ({ id: "o", name: "other", node: "n1", removed: false, ip: null, spec: { image: "i", network: { mode: "bridge" } }, ...over }) as ContainerState;
  const check = async (network: object, others: ContainerState[] = [], reserving = new Set<string>()) => {
    try {
      return await checkNetworkRequest({ node: "n1", network: { mode: "bridge", ...network } }, others, port(), reserving);
    } catch (e) {
      return (e as BerthError).code;
    }
  };

  it("given a free IP and free ports, then it holds them while the create is written", async () => {
    expect(await check({ ip: "10.89.3.9", ports: [{ hostPort: 8080, containerPort: 80 }] })).toEqual(["ip:10.89.3.9", "port:tcp:8080"]);
  });
  it("given an IP another container has (static or from its last start), a lease, or one being created, then Conflict", async () => {
    expect(await check({ ip: "10.89.3.9" }, [other({ spec: { image: "i", network: { mode: "bridge", ip: "10.89.3.9" } } })])).toBe("Conflict");
    expect(await check({ ip: "10.89.3.9" }, [other({ ip: "10.89.3.9" })])).toBe("Conflict");
    expect(await check({ ip: "10.89.3.50" })).toBe("Conflict");
    expect(await check({ ip: "10.89.3.9" }, [], new Set(["ip:10.89.3.9"]))).toBe("Conflict");
  });
  it("given a removed container's IP or another node's, then it is free", async () => {
    expect(await check({ ip: "10.89.3.9" }, [other({ ip: "10.89.3.9", removed: true }), other({ ip: "10.89.3.9", node: "n2" })])).toEqual(["ip:10.89.3.9"]);
  });
  it("given a host port another container publishes or a host process holds, then Conflict; outside the subnet, InvalidArgument", async () => {
    expect(await check({ ports: [{ hostPort: 8080, containerPort: 80 }] }, [other({ spec: { image: "i", network: { mode: "bridge", ports: [{ hostPort: 8080, containerPort: 1 }] } } })])).toBe("Conflict");
    expect(await check({ ports: [{ hostPort: 9999, containerPort: 80 }] })).toBe("Conflict");
    expect(await check({ ip: "10.1.1.1" })).toBe("InvalidArgument");
  });
  it("given network none, then nothing is asked", async () => {
    expect(await checkNetworkRequest({ node: "n1", network: { mode: "none" } }, [], port({ checkIp: () => { throw new Error("asked"); } }), new Set())).toEqual([]);
  });
});
