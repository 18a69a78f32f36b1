/**
 * What the load clients (load-client.mjs) report, and the assertions that turn their reports
 * into the handoff guarantees of DESIGN.md §3: every call answered exactly once, every signal
 * delivered exactly once and in order per sender, no client saw a disconnect or a name change,
 * same unique names, same bus id. Shared by the load and the root-transition tests.
 */
import { expect } from 'vitest';

/** A load client as the test started it. */
export interface LoadPeer {
  role: 'service' | 'caller' | 'emitter' | 'subscriber';
  lib: string;
  uniqueName: string;
  /** The well-known name a service owns. */
  name?: string;
}

export interface LoadReport {
  uniqueName: string;
  role: string;
  lib: string;
  busId: string;
  endBusId: string;
  seconds: number;
  unexpectedReplies: number;
  errors: string[];
  events: { nameOwnerChanged: unknown[]; nameLost: unknown[]; nameAcquired: unknown[] };
  fatal?: string;
  // service
  name?: string;
  answered?: number;
  callers?: Record<string, number>;
  ownerNow?: string;
  // caller
  sent?: number;
  replied?: number;
  inFlight?: number;
  perTarget?: Record<string, number>;
  // emitter
  emitted?: number;
  // emitter (sent) and subscriber (received)
  payloadBytes?: number;
  // subscriber
  received?: number;
  senders?: Record<string, number>;
}

export interface Traffic {
  calls: number;
  signals: number;
  /** Calls + replies + one delivery of each signal per subscriber. */
  delivered: number;
}

export function trafficOf(peers: readonly LoadPeer[], reports: ReadonlyMap<string, LoadReport>): Traffic {
  const of = (role: LoadPeer['role']) => peers.filter((p) => p.role === role).map((p) => reports.get(p.uniqueName));
  const calls = of('caller').reduce((n, r) => n + (r?.replied ?? 0), 0);
  const signals = of('emitter').reduce((n, r) => n + (r?.emitted ?? 0), 0);
  return { calls, signals, delivered: 2 * calls + signals * of('subscriber').length };
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Asserts every guarantee the reports can show; `busId` is the id GetId answered before the handoffs. */
export function expectNoLoss(peers: readonly LoadPeer[], reports: ReadonlyMap<string, LoadReport>, busId: string): void {
  const report = (p: LoadPeer): LoadReport => {
    const r = reports.get(p.uniqueName);
    expect(r, `${p.role} ${p.uniqueName} (${p.lib}) reported`).toBeDefined();
    return r!;
  };
  for (const p of peers) {
    const r = report(p);
    const who = `${p.role} ${p.uniqueName} (${p.lib})`;
    expect(r.fatal, who).toBeUndefined();
    expect(r.errors, who).toEqual([]);
    expect(r.unexpectedReplies, `${who} got replies nobody asked for`).toBe(0);
    expect(r.events, `${who} saw name changes`).toEqual({ nameOwnerChanged: [], nameLost: [], nameAcquired: [] });
    expect([r.busId, r.endBusId], `${who} bus id`).toEqual([busId, busId]);
  }

  const services = peers.filter((p) => p.role === 'service');
  const callers = peers.filter((p) => p.role === 'caller').map(report);
  const emitters = peers.filter((p) => p.role === 'emitter').map(report);

  // Every call got exactly one reply carrying its own sequence number (checked by the caller),
  // and each service saw each caller's calls once and in order (checked by the service).
  for (const c of callers) {
    expect(c.inFlight, `caller ${c.uniqueName} calls without a reply`).toBe(0);
    expect(c.replied).toBe(c.sent);
    expect(c.sent, `caller ${c.uniqueName} made calls`).toBeGreaterThan(0);
    for (const s of services) {
      expect(report(s).callers![c.uniqueName] ?? 0, `${s.name} ← ${c.uniqueName}`).toBe(c.perTarget![s.name!] ?? 0);
    }
  }
  for (const s of services) {
    const r = report(s);
    expect(r.ownerNow, `${s.name} still owned by the same connection`).toBe(s.uniqueName);
    // Each sender's sequence ran 1..n without a gap (checked by the service), so n calls each.
    expect(r.answered, `${s.name} answered exactly the calls it saw`).toBe(
      Object.values(r.callers!).reduce((n, last) => n + last, 0),
    );
  }
  // Every signal reached every subscriber exactly once, in order per sender.
  const emitted = Object.fromEntries(emitters.map((e) => [e.uniqueName, e.emitted]));
  for (const sub of peers.filter((p) => p.role === 'subscriber')) {
    const r = report(sub);
    expect(r.senders, `subscriber ${sub.uniqueName}: last sequence number per emitter`).toEqual(emitted);
    expect(r.received).toBe(emitters.reduce((n, e) => n + e.emitted!, 0));
    expect(r.payloadBytes ?? 0, `subscriber ${sub.uniqueName}: payload bytes`).toBe(
      emitters.reduce((n, e) => n + (e.payloadBytes ?? 0), 0),
    );
  }
}
