// Node asks libuv to measure how long its event loop sits idle (UV_METRICS_IDLE_TIME, for
// performance.eventLoopUtilization). With that on, every wait for events is two system calls:
// epoll_pwait without waiting, then, finding nothing, epoll_pwait again for real. A bus with one
// call in flight waits once per message: one routed message took 5 system calls, 1 of them that.
// ferrybus never asks for the loop's utilization, so the daemon turns the measurement off.
//
// libuv has no option to turn it off: the flag is cleared where libuv keeps it, the first word
// of the loop's internal fields (uv_loop_t.internal_fields, at a fixed place in the public
// struct since libuv 1.34). Only on a libuv whose layout is known, and only when that word holds
// exactly the flags expected; anything else leaves the loop as it is.

import koffi from 'koffi';

/** uv_loop_t: data, active_handles, handle_queue[2], active_reqs, then internal_fields. */
const INTERNAL_FIELDS_OFFSET = 40;
/** The flag's bit (uv_loop_option UV_METRICS_IDLE_TIME = 1, stored as itself). */
const METRICS_IDLE_TIME = 1;
/** Every flag libuv 1.x keeps in that word (UV_METRICS_IDLE_TIME, io_uring's SQPOLL option). */
const KNOWN_FLAGS = 0x3;

/** libuv versions whose layout this was checked against: 1.39 up to 1.x. */
function layoutKnown(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return process.arch === 'x64' || process.arch === 'arm64' ? major === 1 && minor! >= 39 : false;
}

/**
 * Stops libuv's idle-time measurement of node's loop. Returns whether it was on and is off now;
 * false (and nothing changed) where the layout is not one this knows.
 */
export function stopIdleTimeMetrics(): boolean {
  if (!layoutKnown(process.versions.uv ?? '')) return false;
  try {
    const loop = koffi.load(null as unknown as string).func('void *uv_default_loop(void)')() as unknown;
    if (!loop) return false;
    const fields = koffi.decode(loop, INTERNAL_FIELDS_OFFSET, 'void *') as unknown;
    if (!fields) return false;
    const flags = koffi.decode(fields, 0, 'uint32_t') as number;
    if ((flags & METRICS_IDLE_TIME) === 0 || (flags & ~KNOWN_FLAGS) !== 0) return false;
    koffi.encode(fields, 0, 'uint32_t', flags & ~METRICS_IDLE_TIME);
    return true;
  } catch {
    return false;
  }
}
