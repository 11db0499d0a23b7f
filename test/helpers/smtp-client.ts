/**
 * A raw SMTP client over a socket, for tests that must send exactly what they want (malformed commands,
 * pipelined batches, bytes after QUIT) and read exactly what the server answers.
 *
 *   const c = await SmtpClient.connect(port);        // reads the greeting
 *   const r = await c.command('EHLO client.test');   // { code: 250, lines: [...], enhanced?: '2.0.0' }
 *   await c.startTls({ ca });                         // STARTTLS + handshake
 *   c.write('MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n');   // raw bytes; then c.reply() twice
 *   await c.closed                                     // resolves when the server closed the connection
 */
import net from 'node:net';
import tls from 'node:tls';

export interface Reply {
  code: number;
  /** Text of each line, without the code and separator. */
  lines: string[];
  /** Enhanced status code of the last line, when it has one. */
  enhanced?: string;
  /** All lines joined, e.g. "550 5.7.1 Sender address not allowed". */
  raw: string;
}

export class SmtpClient {
  greeting!: Reply;
  readonly closed: Promise<void>;
  private buffer = '';
  private readonly waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private readonly replies: Reply[] = [];
  private ended = false;

  private constructor(private socket: net.Socket | tls.TLSSocket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.attach(socket);
  }

  /**
   * `localAddress` picks the client address (any 127.x.y.z works on loopback): per-client limits.
   * `proxyHeader` is written first thing, before any TLS, as a load balancer speaking the PROXY
   * protocol would (test/helpers/proxy-header.ts builds them).
   */
  static async connect(
    port: number,
    opts: {
      host?: string;
      localAddress?: string;
      tls?: tls.ConnectionOptions;
      timeoutMs?: number;
      proxyHeader?: Buffer;
    } = {},
  ): Promise<SmtpClient> {
    const host = opts.host ?? '127.0.0.1';
    const local = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const settled = (s: net.Socket, event: string) =>
      new Promise<void>((resolve, reject) => {
        s.once(event, () => resolve());
        s.once('error', reject);
      });
    let socket: net.Socket | tls.TLSSocket;
    if (opts.proxyHeader) {
      const plain = net.connect({ host, port, ...local });
      await settled(plain, 'connect');
      plain.write(opts.proxyHeader);
      socket = opts.tls ? tls.connect({ socket: plain, servername: 'localhost', ...opts.tls }) : plain;
      if (opts.tls) await settled(socket, 'secureConnect');
    } else {
      socket = opts.tls
        ? tls.connect({ host, port, servername: 'localhost', ...local, ...opts.tls })
        : net.connect({ host, port, ...local });
      await settled(socket, opts.tls ? 'secureConnect' : 'connect');
    }
    const client = new SmtpClient(socket);
    try {
      client.greeting = await client.reply(opts.timeoutMs);
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  /** The client's port: with the server's, it names this connection in a trace of the server. */
  get localPort(): number {
    return this.socket.localPort!;
  }

  get tlsSocket(): tls.TLSSocket | undefined {
    return this.socket instanceof tls.TLSSocket ? this.socket : undefined;
  }

  /** Writes raw bytes; false means the socket's buffer is full (await drained() before more). */
  write(data: string | Buffer): boolean {
    return this.socket.write(data);
  }

  drained(): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('drain', () => resolve()));
  }

  async command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** The next complete reply. */
  reply(timeoutMs = 10_000): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(new Error('connection closed'));
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.findIndex((w) => w.resolve === done);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`no SMTP reply within ${timeoutMs} ms (buffer: ${JSON.stringify(this.buffer)})`));
      }, timeoutMs);
      const done = (r: Reply) => {
        clearTimeout(timer);
        resolve(r);
      };
      this.waiting.push({
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async startTls(opts: tls.ConnectionOptions = {}): Promise<Reply> {
    const r = await this.command('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, servername: 'localhost', ...opts });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure, false);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }

  private attach(socket: net.Socket | tls.TLSSocket, watchClose = true): void {
    socket.on('data', (d: Buffer) => this.onData(d.toString('utf8')));
    socket.on('error', () => undefined);
    if (watchClose)
      socket.once('close', () => {
        this.ended = true;
        for (const w of this.waiting.splice(0)) w.reject(new Error('connection closed'));
      });
  }

  private current: string[] = [];

  private onData(text: string): void {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 2);
      this.current.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        const lines = this.current;
        this.current = [];
        const code = Number(line.slice(0, 3));
        const texts = lines.map((l) => l.slice(4));
        const enhanced = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/.exec(texts[texts.length - 1] ?? '')?.[1];
        const reply: Reply = { code, lines: texts, enhanced, raw: lines.join('\n') };
        const w = this.waiting.shift();
        if (w) w.resolve(reply);
        else this.replies.push(reply);
      }
    }
  }
}

/** AUTH PLAIN initial response for user/password. */
export function authPlain(user: string, password: string): string {
  return Buffer.from(`\0${user}\0${password}`).toString('base64');
}
