/**
 * PROXY protocol headers as a load balancer sends them (haproxy's doc/proxy-protocol.txt), written
 * here independently of the relay's parser so tests do not check the parser against itself.
 *
 *   proxyV1('127.0.0.50', 40000)              "PROXY TCP4 127.0.0.50 127.0.0.1 40000 25\r\n"
 *   proxyV2({ source: '127.0.0.50' })         PROXY command, TCP over IPv4
 *   proxyV2({ source: '::ffff:127.0.0.50' })  TCP over IPv6
 *   proxyV2({ command: 'LOCAL' })             a health check: no address
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

export function proxyV1(source: string, sourcePort = 40000, dest = '127.0.0.1', destPort = 25): Buffer {
  const family = net.isIPv6(source) ? 'TCP6' : 'TCP4';
  return Buffer.from(`PROXY ${family} ${source} ${dest} ${sourcePort} ${destPort}\r\n`, 'latin1');
}

function ipBytes(address: string): number[] {
  return ipaddr.parse(address).toByteArray();
}

export function proxyV2(
  opts: {
    source?: string;
    sourcePort?: number;
    dest?: string;
    destPort?: number;
    command?: 'LOCAL' | 'PROXY';
    tlv?: Buffer;
  } = {},
): Buffer {
  const command = opts.command === 'LOCAL' ? 0x20 : 0x21;
  if (opts.command === 'LOCAL')
    return Buffer.concat([V2_SIGNATURE, Buffer.from([command, 0x00, 0x00, 0x00])]);
  const source = opts.source ?? '127.0.0.50';
  const v6 = net.isIPv6(source);
  const dest = opts.dest ?? (v6 ? '::1' : '127.0.0.1');
  const addr = Buffer.from([...ipBytes(source), ...ipBytes(dest)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(opts.sourcePort ?? 40000, 0);
  ports.writeUInt16BE(opts.destPort ?? 25, 2);
  const body = Buffer.concat([addr, ports, opts.tlv ?? Buffer.alloc(0)]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([command, v6 ? 0x21 : 0x11]), len, body]);
}
