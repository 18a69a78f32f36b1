/**
 * Which bus the integration suite runs against, chosen by ONE environment variable.
 *
 * The same tests run against ferrybus and the two reference buses, so a test that passes
 * against dbus-daemon and dbus-broker proves our expectation is the reference behaviour.
 */
export const BUS_KINDS = ['ferrybus', 'dbus-daemon', 'dbus-broker'] as const;
export type BusKind = (typeof BUS_KINDS)[number];

export const BUS_KIND_ENV = 'FERRYBUS_TEST_BUS';

export function busKindFromEnv(env: NodeJS.ProcessEnv = process.env): BusKind {
  const raw = env[BUS_KIND_ENV];
  if (raw === undefined || raw === '') return 'ferrybus';
  if ((BUS_KINDS as readonly string[]).includes(raw)) return raw as BusKind;
  throw new Error(`${BUS_KIND_ENV}=${raw} is not one of ${BUS_KINDS.join(', ')}`);
}
