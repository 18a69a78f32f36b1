// One bus connection behind a small common interface, over either of two independent client
// implementations: "raw" (the project's own src/wire, built to dist/) or "next" (dbus-next).
// Plain JavaScript on purpose: these run as separate node processes (one per peer), also
// inside chroot trees, with no TypeScript loader.
//
// Interface of a peer:
//   uniqueName                          set by Hello
//   call({destination, path, interface, member, signature, body}) → Promise<{type, body, errorName}>
//   signal({path, interface, member, signature, body})             fire and forget
//   reply(call, signature, body)                                   answers an incoming call
//   onCall(fn(msg))  onSignal(fn(msg))  onClose(fn(reason))
//   stallReads(ms)                                                 stops reading for a while (raw only)
//   close()
// Incoming messages are {type, serial, sender, destination, path, interface, member, body}.
import * as net from 'node:net';

const DIST = new URL('../../../dist/src/wire/', import.meta.url);
const { Framer } = await import(new URL('framer.js', DIST).href);
const { encodeMessage, parseMessage, readBody } = await import(new URL('message.js', DIST).href);
const { marshal } = await import(new URL('marshal.js', DIST).href);

export const TYPE = { CALL: 1, RETURN: 2, ERROR: 3, SIGNAL: 4 };
export const DRIVER = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

/** `unix:path=/x/y,guid=…` → `/x/y` (values escaped as dbus_address_escape_value does). */
export function socketPathOf(address) {
  const m = /(?:^|;)unix:([^;]*)/.exec(address);
  if (!m) throw new Error(`not a unix address: ${address}`);
  for (const kv of m[1].split(',')) {
    const [k, v] = kv.split('=');
    if (k === 'path') return decodeURIComponent(v);
  }
  throw new Error(`no path= in ${address}`);
}

/** Client side of SASL EXTERNAL; resolves with bytes that followed the OK line (normally none). */
export function authenticate(socket) {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (chunk) => {
      got = Buffer.concat([got, chunk]);
      const nl = got.indexOf('\r\n');
      if (nl < 0) return;
      socket.off('data', onData);
      socket.off('error', reject);
      const line = got.toString('latin1', 0, nl);
      if (!line.startsWith('OK ')) return reject(new Error(`authentication refused: ${line}`));
      resolve(got.subarray(nl + 2));
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`\0AUTH EXTERNAL ${Buffer.from(String(process.getuid())).toString('hex')}\r\n`);
  });
}

/** kind: 'raw' or 'next'; options.splitWrites (raw only): see RawPeer#write. */
export async function connectPeer(kind, address, options = {}) {
  if (kind === 'next') return NextPeer.connect(address);
  const peer = await RawPeer.connect(address);
  peer.splitWrites = options.splitWrites === true;
  return peer;
}

class RawPeer {
  constructor(socket) {
    this.socket = socket;
    this.framer = new Framer();
    this.serial = 0;
    this.waiting = new Map();
    this.callHandlers = [];
    this.signalHandlers = [];
    this.closeHandlers = [];
    this.out = [];
    this.writing = false;
    this.splitWrites = false;
    this.lastLength = 0;
    this.uniqueName = '';
    this.closedByUs = false;
    this.unexpectedReplies = 0;
    socket.on('data', (chunk) => {
      try {
        this.onData(chunk);
      } catch (err) {
        // A stream that no longer parses is a lost connection for this client.
        closed(`unreadable message from the bus: ${err.message}`);
        socket.destroy();
      }
    });
    const closed = (why) => {
      if (this.closed) return;
      this.closed = why;
      for (const w of this.waiting.values()) w.reject(new Error(`connection lost: ${why}`));
      this.waiting.clear();
      if (!this.closedByUs) for (const h of this.closeHandlers) h(why);
    };
    socket.on('error', (e) => closed(e.code ?? e.message));
    socket.on('close', () => closed('closed by the bus'));
  }

  static async connect(address) {
    const socket = net.connect({ path: socketPathOf(address) });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const rest = await authenticate(socket);
    socket.write('BEGIN\r\n');
    const peer = new RawPeer(socket);
    if (rest.length > 0) peer.onData(rest);
    const [name] = (await peer.call({ ...DRIVER, member: 'Hello' })).body;
    peer.uniqueName = name;
    return peer;
  }

  onData(chunk) {
    for (const bytes of this.framer.push(chunk)) {
      const m = parseMessage(bytes);
      const h = m.header;
      const msg = {
        type: h.type, serial: h.serial, replySerial: h.replySerial, sender: h.sender, destination: h.destination,
        path: h.path, interface: h.interface, member: h.member, errorName: h.errorName, body: readBody(m),
      };
      if (h.type === TYPE.RETURN || h.type === TYPE.ERROR) {
        const w = this.waiting.get(h.replySerial);
        if (!w) {
          this.unexpectedReplies++;
          continue;
        }
        this.waiting.delete(h.replySerial);
        w.resolve(msg);
      } else if (h.type === TYPE.CALL) {
        for (const fn of this.callHandlers) fn(msg);
      } else if (h.type === TYPE.SIGNAL) {
        for (const fn of this.signalHandlers) fn(msg);
      }
    }
  }

  /**
   * Messages sent in one turn go out as one write. With `splitWrites`, the last message of each
   * write is cut short and its tail follows a millisecond later, so the bus almost always holds
   * a partial message from this client (what a handoff must carry over as inbound bytes).
   */
  write(bytes) {
    this.out.push(bytes);
    this.lastLength = bytes.length;
    this.kick();
  }

  kick() {
    if (this.writing || this.out.length === 0) return;
    this.writing = true;
    process.nextTick(() => {
      const all = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
      this.out = [];
      if (this.closed) return;
      if (!this.splitWrites) {
        this.socket.write(all);
        this.writing = false;
        return this.kick();
      }
      const cut = all.length - 1 - Math.floor(Math.random() * (this.lastLength - 1));
      this.socket.write(all.subarray(0, cut));
      setTimeout(() => {
        if (this.closed) return;
        this.socket.write(all.subarray(cut));
        this.writing = false;
        this.kick();
      }, 1);
    });
  }

  call({ destination, path, interface: iface, member, signature = '', body = [] }) {
    const serial = ++this.serial;
    return new Promise((resolve, reject) => {
      this.waiting.set(serial, { resolve, reject });
      this.write(encodeMessage({
        type: TYPE.CALL, serial, destination, path, interface: iface, member, signature,
        body: signature ? marshal(signature, body) : undefined,
      }));
    });
  }

  signal({ path, interface: iface, member, signature = '', body = [] }) {
    this.write(encodeMessage({
      type: TYPE.SIGNAL, serial: ++this.serial, path, interface: iface, member, signature,
      body: signature ? marshal(signature, body) : undefined,
    }));
  }

  reply(call, signature = '', body = []) {
    this.write(encodeMessage({
      type: TYPE.RETURN, serial: ++this.serial, replySerial: call.serial, destination: call.sender, signature,
      body: signature ? marshal(signature, body) : undefined,
    }));
  }

  onCall(fn) { this.callHandlers.push(fn); }
  onSignal(fn) { this.signalHandlers.push(fn); }
  onClose(fn) { this.closeHandlers.push(fn); }

  /** Stops reading from the bus for `ms` (a paused socket stops reading once its buffer is full). */
  stallReads(ms) {
    this.socket.pause();
    setTimeout(() => this.socket.resume(), ms);
  }

  close() {
    this.closedByUs = true;
    this.socket.destroy();
  }
}

class NextPeer {
  constructor(dbus, bus) {
    this.dbus = dbus;
    this.bus = bus;
    this.uniqueName = bus.name;
    this.callHandlers = [];
    this.signalHandlers = [];
    this.closeHandlers = [];
    this.closedByUs = false;
    this.unexpectedReplies = 0;
    const conv = (m) => ({
      type: m.type, serial: m.serial, replySerial: m.replySerial, sender: m.sender, destination: m.destination,
      path: m.path, interface: m.interface, member: m.member, errorName: m.errorName, body: m.body, raw: m,
    });
    bus.on('message', (m) => {
      if (m.type === TYPE.SIGNAL) for (const fn of this.signalHandlers) fn(conv(m));
      else if ((m.type === TYPE.RETURN || m.type === TYPE.ERROR) && !bus._methodReturnHandlers[m.replySerial]) {
        this.unexpectedReplies++;
      }
    });
    // Handled calls are answered by us; dbus-next answers the rest with UnknownMethod.
    bus.addMethodHandler((m) => {
      let handled = false;
      for (const fn of this.callHandlers) handled = fn(conv(m)) !== false || handled;
      return handled;
    });
    const stream = bus._connection.stream;
    const closed = (why) => {
      if (this.closed) return;
      this.closed = why;
      if (!this.closedByUs) for (const h of this.closeHandlers) h(why);
    };
    stream.on('close', () => closed('closed by the bus'));
    bus.on('error', (e) => closed(String(e?.message ?? e)));
  }

  static async connect(address) {
    const dbus = (await import('dbus-next')).default;
    const bus = dbus.sessionBus({ busAddress: address });
    await new Promise((resolve, reject) => {
      bus.once('connect', resolve);
      bus.once('error', reject);
    });
    return new NextPeer(dbus, bus);
  }

  async call({ destination, path, interface: iface, member, signature = '', body = [] }) {
    const { Message } = this.dbus;
    try {
      const r = await this.bus.call(new Message({ destination, path, interface: iface, member, signature, body }));
      return { type: TYPE.RETURN, body: r ? r.body : [] };
    } catch (e) {
      if (e && e.type && e.reply) return { type: TYPE.ERROR, errorName: e.type, body: e.reply.body };
      throw e;
    }
  }

  signal({ path, interface: iface, member, signature = '', body = [] }) {
    this.bus.send(this.dbus.Message.newSignal(path, iface, member, signature, body));
  }

  reply(call, signature = '', body = []) {
    this.bus.send(this.dbus.Message.newMethodReturn(call.raw, signature, body));
  }

  onCall(fn) { this.callHandlers.push(fn); }
  onSignal(fn) { this.signalHandlers.push(fn); }
  onClose(fn) { this.closeHandlers.push(fn); }

  stallReads() {
    // dbus-next reads on 'readable': pausing its socket would not stop it reading.
    throw new Error('stallReads is for raw peers only');
  }

  close() {
    this.closedByUs = true;
    this.bus.disconnect();
  }
}
