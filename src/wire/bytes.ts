/**
 * The unsigned 32-bit integer at `at`, in the message's byte order; the caller has checked that
 * its 4 bytes are there. Plain indexing: Buffer's readUInt32LE/BE validate their offset on
 * every call, and these reads run several times for every routed message.
 */
export function readU32(buf: Uint8Array, at: number, littleEndian: boolean): number {
  return littleEndian
    ? (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0
    : ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
