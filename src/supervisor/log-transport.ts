import Transport from 'winston-transport';
import { StderrOrKmsg } from './log-sink.js';

const MESSAGE = Symbol.for('message');

/** winston's end of the log: each formatted line to stderr, or /dev/kmsg once stderr is gone (see log-sink.ts). */
export class StderrOrKmsgTransport extends Transport {
  constructor(private readonly sink: StderrOrKmsg = new StderrOrKmsg()) {
    super();
  }

  override log(info: Record<string | symbol, unknown>, callback: () => void): void {
    this.sink.write(`${String(info[MESSAGE])}\n`);
    callback();
  }
}
