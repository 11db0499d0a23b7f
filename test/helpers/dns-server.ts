/**
 * A small authoritative DNS server for tests, run as its own process (tests do not mock node's dns):
 *
 *   node test/helpers/dns-server.ts ZONE.json [PORT [HOST]]
 *
 * Serves UDP and TCP on HOST (default 127.0.0.1; PORT 0 or omitted: a free port). Node strips the types of this file
 * itself (Node >= 22.18), so it uses erasable TypeScript only and imports nothing but node built-ins
 * and dns-packet. Start it through test/helpers/dns.ts, which also reads its output.
 *
 * Zone file (JSON, see ZoneFile in dns.ts):
 *   records   [{ name, type: A|AAAA|MX|TXT|CNAME|NS, ttl?, data }] — MX data { preference, exchange },
 *             exchange "." is a null MX (RFC 7505); TXT data is a string or a list of strings
 *   servfail  names answered with SERVFAIL (any type)
 *   timeout   names never answered (the resolver times out)
 *   truncate  names whose UDP answers are truncated (TC), so resolvers retry over TCP
 *   delayMs   { name: ms }: names answered only after that many milliseconds (a slow recursive resolver)
 * A name with no records at all is NXDOMAIN; a name with records of other types gets an empty NOERROR
 * answer (NODATA), with an SOA in the authority section as real servers send.
 *
 * Output on stdout, one JSON object per line: {"event":"ready","port":N} once listening,
 * {"event":"query","name":…,"type":…,"transport":"udp"|"tcp"} for every question, and
 * {"event":"reloaded"} after SIGHUP re-read the zone file.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';

interface ZoneRecord {
  name: string;
  type: string;
  ttl?: number;
  data: unknown;
}
interface Zone {
  records: ZoneRecord[];
  servfail?: string[];
  timeout?: string[];
  truncate?: string[];
  delayMs?: Record<string, number>;
}

const NOERROR = 0;
const SERVFAIL = 2;
const NXDOMAIN = 3;

const zoneFile = process.argv[2];
const requestedPort = Number(process.argv[3] ?? 0);
const host = process.argv[4] ?? '127.0.0.1';
if (!zoneFile) {
  process.stderr.write('usage: dns-server.ts ZONE.json [PORT]\n');
  process.exit(2);
}

const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');
let zone: Zone = { records: [] };
function loadZone(): void {
  zone = JSON.parse(fs.readFileSync(zoneFile as string, 'utf8')) as Zone;
}
loadZone();

function emit(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function toAnswer(r: ZoneRecord): dnsPacket.Answer {
  const base = { name: r.name, ttl: r.ttl ?? 60, class: 'IN' as const };
  if (r.type === 'MX') {
    const d = r.data as { preference: number; exchange: string };
    return {
      ...base,
      type: 'MX',
      data: { preference: d.preference, exchange: d.exchange === '.' ? '' : d.exchange },
    };
  }
  if (r.type === 'TXT') {
    const d = r.data as string | string[];
    return { ...base, type: 'TXT', data: Array.isArray(d) ? d : [d] };
  }
  return { ...base, type: r.type as 'A', data: r.data as string };
}

/** The response to one query, or undefined to stay silent (timeout). */
function answer(query: dnsPacket.DecodedPacket, transport: 'udp' | 'tcp'): Buffer | undefined {
  const q = query.questions?.[0];
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0);
  const reply = (
    rcode: number,
    answers: dnsPacket.Answer[] = [],
    authorities: dnsPacket.Answer[] = [],
    extra = 0,
  ) =>
    dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: flags | rcode | extra,
      questions: query.questions,
      answers,
      authorities,
    });
  if (!q) return reply(1); // FORMERR
  const name = lower(q.name);
  emit({ event: 'query', name, type: q.type, transport });
  if (zone.timeout?.map(lower).includes(name)) return undefined;
  if (zone.servfail?.map(lower).includes(name)) return reply(SERVFAIL);
  const atName = zone.records.filter((r) => lower(r.name) === name);
  if (atName.length === 0) return reply(NXDOMAIN, [], [soa(name)]);
  const matching = atName.filter((r) => r.type === q.type);
  if (matching.length === 0) return reply(NOERROR, [], [soa(name)]);
  if (transport === 'udp' && zone.truncate?.map(lower).includes(name))
    return reply(NOERROR, [], [], dnsPacket.TRUNCATED_RESPONSE);
  return reply(NOERROR, matching.map(toAnswer));
}

function soa(name: string): dnsPacket.Answer {
  return {
    name,
    type: 'SOA',
    ttl: 60,
    data: {
      mname: 'ns.test',
      rname: 'hostmaster.test',
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: 30,
    },
  };
}

/** Runs `send` now, or after the zone's delay for the query's name. */
function later(query: dnsPacket.DecodedPacket, send: () => void): void {
  const name = lower(query.questions?.[0]?.name ?? '');
  const entry = Object.entries(zone.delayMs ?? {}).find(([n]) => lower(n) === name);
  if (entry) setTimeout(send, entry[1]);
  else send();
}

function udpServer(): dgram.Socket {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const out = answer(query, 'udp');
    if (out) later(query, () => udp.send(out, rinfo.port, rinfo.address));
  });
  return udp;
}

const tcp = net.createServer((socket) => {
  let buffered = Buffer.alloc(0);
  socket.on('error', () => undefined);
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2) {
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) return;
      const msg = buffered.subarray(2, 2 + length);
      buffered = buffered.subarray(2 + length);
      let query: dnsPacket.DecodedPacket;
      try {
        query = dnsPacket.decode(msg);
      } catch {
        socket.destroy();
        return;
      }
      const out = answer(query, 'tcp');
      if (!out) continue;
      const framed = Buffer.alloc(2 + out.length);
      framed.writeUInt16BE(out.length, 0);
      out.copy(framed, 2);
      later(query, () => socket.write(framed));
    }
  });
});

process.on('SIGHUP', () => {
  try {
    loadZone();
    emit({ event: 'reloaded' });
  } catch (err) {
    emit({ event: 'error', message: String(err) });
  }
});
process.on('SIGTERM', () => process.exit(0));

// UDP and TCP on the same port number: bind UDP first (port 0 → any), then TCP on that port; retry
// with another port when TCP's is taken (a UDP port the kernel hands out can be a TCP port in use).
// The listen callback is not passed to tcp.listen(): a failed listen keeps it registered, and the
// retry's success would then announce the first, closed port as ready as well.
function listen(attempt: number): void {
  const udp = udpServer();
  udp.bind(attempt === 0 ? requestedPort : 0, host, () => {
    const port = udp.address().port;
    const onListening = (): void => {
      tcp.off('error', onError);
      emit({ event: 'ready', port });
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      tcp.off('listening', onListening);
      if (err.code === 'EADDRINUSE' && requestedPort === 0 && attempt < 20) {
        udp.close();
        listen(attempt + 1);
      } else throw err;
    };
    tcp.once('listening', onListening);
    tcp.once('error', onError);
    tcp.listen(port, host);
  });
}
listen(0);
