import type * as net from 'node:net';

/** The parts of libuv's stream handle (Node's internal `_handle`) this module uses. */
interface StreamHandle {
  useUserBuffer(buffer: Uint8Array): void;
  onread: (...args: unknown[]) => void;
  readStart(): number;
}

const EMPTY = new Uint8Array(0);

/**
 * Calls `onReadable` from Node's event loop whenever the socket has bytes, without reading them:
 * given a zero-length buffer (the handle's user buffer, as net's `onread` option uses), libuv
 * reports "no buffer" instead of calling read(), so the bytes and their fds stay for recvmsg.
 * libuv polls level-triggered: bytes left unread are reported again on the next turn.
 *
 * `_handle`, `useUserBuffer` and `onread` are Node internals, stable since Node 12.
 */
export function notifyReadable(socket: net.Socket, onReadable: () => void): void {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') throw new Error('the socket has no libuv stream handle');
  handle.useUserBuffer(EMPTY);
  handle.onread = onReadable;
  const err = handle.readStart();
  if (err !== 0) throw new Error(`uv_read_start failed (${err})`);
}
