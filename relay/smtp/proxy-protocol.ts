/**
 * The PROXY protocol header, versions 1 (text) and 2 (binary), as a load balancer or L4 proxy sends it
 * at the start of a connection to tell the relay the client's real address. Pure functions over bytes;
 * relay/smtp/connection.ts reads the socket and decides whom to trust.
 *
 * Spec: "The PROXY protocol, Versions 1 & 2", Willy Tarreau, HAProxy Technologies, 2020/03/05
 * (haproxy's doc/proxy-protocol.txt). What this parser holds to, by section:
 *
 *  2.1 (v1)  "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") ..., one line ending in CRLF within 107 bytes.
 *            TCP4/TCP6: exactly "PROXY TCPx src dst sport dport\r\n", single spaces, addresses in
 *            canonical form of the announced family (IPv4 dotted quad without leading zeros), ports
 *            0..65535 without leading zeros. A bare CR or LF, a missing CRLF within 107 bytes, or any
 *            deviation is invalid. UNKNOWN: whatever precedes the CRLF is ignored and the connection's
 *            own addresses are used.
 *  2.2 (v2)  the 12-byte signature \r\n\r\n\0\r\nQUIT\n, version nibble 2 (nothing else accepted),
 *            command LOCAL (0: the proxy's own connection, e.g. a health check; addresses ignored) or
 *            PROXY (1); any other command, an address family above 3 or a transport above 2 is invalid.
 *            The header is 16 + len bytes; TLVs after the addresses are skipped. PROXY with TCP over
 *            IPv4 (\x11, 12 address bytes) or IPv6 (\x21, 36 bytes) carries the client's address; the
 *            other valid combinations (UNSPEC \x00, UDP \x12/\x22, UNIX \x31/\x32) fall back to the
 *            connection's own addresses, as the spec asks of receivers that do not support them. An
 *            address block shorter than its family needs is invalid.
 *
 * The result says how many bytes the header took, so the caller can hand the rest to SMTP or TLS.
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Longest v1 line, CRLF included (spec 2.1). */
export const V1_MAX_LENGTH = 107;
/** Longest v2 header: 16 fixed bytes and a 16-bit length. */
export const V2_MAX_LENGTH = 16 + 0xffff;

export interface ProxySource {
  address: string;
  port: number;
}

export type ProxyHeader =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  | {
      status: 'ok';
      version: 1 | 2;
      /** Bytes the header took at the start of the input. */
      length: number;
      /** The client's address; undefined: use the connection's own (v1 UNKNOWN, v2 LOCAL or unsupported family). */
      source?: ProxySource;
    };

/** Does `buf` start with (a prefix of) `sig`? 'yes' when all of sig is there, 'partial' when buf is shorter. */
function prefixMatch(buf: Buffer, sig: Buffer): 'yes' | 'partial' | 'no' {
  const n = Math.min(buf.length, sig.length);
  if (!buf.subarray(0, n).equals(sig.subarray(0, n))) return 'no';
  return n === sig.length ? 'yes' : 'partial';
}

/**
 * What the first bytes of a connection are: a PROXY header (either version), not one, or too few bytes
 * to tell. Used for connections from addresses that may not send one.
 */
export function looksLikeProxyHeader(buf: Buffer): 'yes' | 'no' | 'undecided' {
  const v1 = prefixMatch(buf, V1_PREFIX);
  const v2 = prefixMatch(buf, V2_SIGNATURE);
  if (v1 === 'yes' || v2 === 'yes') return 'yes';
  return v1 === 'partial' || v2 === 'partial' ? 'undecided' : 'no';
}

/** Parses a PROXY header at the start of `buf` (which may hold more bytes after it). */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  if (prefixMatch(buf, V2_SIGNATURE) === 'yes') return parseV2(buf);
  const v1 = prefixMatch(buf, V1_PREFIX);
  if (v1 === 'yes') return parseV1(buf);
  if (v1 === 'partial' || prefixMatch(buf, V2_SIGNATURE) === 'partial') return { status: 'incomplete' };
  return { status: 'invalid', reason: 'not a PROXY protocol header' };
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;
const IPV4_OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${IPV4_OCTET}(\\.${IPV4_OCTET}){3}$`);

function v1Address(family: 'TCP4' | 'TCP6', text: string): boolean {
  if (family === 'TCP4') return IPV4.test(text);
  // Hex groups and colons (an embedded IPv4 tail is what a dual-stack proxy writes for v4-mapped
  // clients); no zone index.
  return /^[0-9A-Fa-f:.]+$/.test(text) && net.isIPv6(text);
}

function parseV1(buf: Buffer): ProxyHeader {
  const window = buf.subarray(0, V1_MAX_LENGTH);
  const crlf = window.indexOf('\r\n', 0, 'latin1');
  const bareEnd = [window.indexOf(0x0d), window.indexOf(0x0a)].filter((i) => i >= 0);
  const firstEnd = bareEnd.length > 0 ? Math.min(...bareEnd) : -1;
  if (crlf < 0) {
    if (firstEnd >= 0 && !(window[firstEnd] === 0x0d && firstEnd === window.length - 1))
      return { status: 'invalid', reason: 'v1 line not ended by CRLF' };
    return buf.length >= V1_MAX_LENGTH
      ? { status: 'invalid', reason: `v1 line longer than ${V1_MAX_LENGTH} bytes` }
      : { status: 'incomplete' };
  }
  if (firstEnd < crlf) return { status: 'invalid', reason: 'v1 line not ended by CRLF' };
  const length = crlf + 2;
  const line = window.subarray(0, crlf).toString('latin1');
  const fields = line.split(' ');
  if (fields[1] === 'UNKNOWN') return { status: 'ok', version: 1, length };
  const [, family, src, dst, sport, dport] = fields;
  if (family !== 'TCP4' && family !== 'TCP6')
    return {
      status: 'invalid',
      reason: `v1 protocol ${JSON.stringify(family ?? '')} is not TCP4, TCP6 or UNKNOWN`,
    };
  if (fields.length !== 6) return { status: 'invalid', reason: 'v1 line does not have six fields' };
  if (!v1Address(family, src!) || !v1Address(family, dst!))
    return {
      status: 'invalid',
      reason: `v1 address is not a ${family === 'TCP4' ? 'IPv4' : 'IPv6'} address`,
    };
  if (!PORT.test(sport!) || !PORT.test(dport!) || Number(sport) > 65535 || Number(dport) > 65535)
    return { status: 'invalid', reason: 'v1 port is not 0..65535' };
  return { status: 'ok', version: 1, length, source: { address: canonical(src!), port: Number(sport) } };
}

function parseV2(buf: Buffer): ProxyHeader {
  if (buf.length < 16) return { status: 'incomplete' };
  const version = buf[12]! >> 4;
  const command = buf[12]! & 0x0f;
  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (version !== 2) return { status: 'invalid', reason: `v2 header with version ${version}` };
  if (command > 1) return { status: 'invalid', reason: `v2 command ${command} is neither LOCAL nor PROXY` };
  if (family > 3 || transport > 2)
    return {
      status: 'invalid',
      reason: `v2 address family/transport 0x${buf[13]!.toString(16)} is not defined`,
    };
  const length = 16 + buf.readUInt16BE(14);
  if (buf.length < length) return { status: 'incomplete' };
  if (command === 0) return { status: 'ok', version: 2, length }; // LOCAL: the proxy's own connection
  const block = buf.subarray(16, length);
  const needs = [0, 12, 36, 216][family]!;
  if (block.length < needs)
    return { status: 'invalid', reason: `v2 address block of ${block.length} bytes, family needs ${needs}` };
  if (transport !== 1 || (family !== 1 && family !== 2)) return { status: 'ok', version: 2, length };
  const bytes = family === 1 ? 4 : 16;
  const address = ipaddr.fromByteArray([...block.subarray(0, bytes)]).toString();
  const port = block.readUInt16BE(2 * bytes);
  return { status: 'ok', version: 2, length, source: { address: canonical(address), port } };
}

/** One spelling per address (RFC 5952 for IPv6; IPv4-mapped IPv6 as the IPv4 address it carries). */
function canonical(address: string): string {
  return ipaddr.process(address).toString();
}
