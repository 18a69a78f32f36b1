// What reading a busconfig file produces. The shapes are consumed by the policy compiler in
// src/bus: change them only by adding optional fields.

export interface SourceLocation {
  readonly file: string;
  readonly line: number;
}

export type PolicySelector =
  | { readonly context: 'default' | 'mandatory' }
  | { readonly user: string }
  | { readonly group: string }
  | { readonly atConsole: boolean };

/**
 * What a rule is checked against, as dbus-daemon classifies it: `send` and `receive` for
 * messages (a rule whose only message attribute is eavesdrop is a receive rule), `own` for
 * name ownership (own, own_prefix), `connect` for new connections (user, group).
 */
export type PolicyRuleKind = 'send' | 'receive' | 'own' | 'connect';

export interface PolicyRule {
  readonly kind: 'allow' | 'deny';
  /** The rule's attributes as written, e.g. { send_destination: 'org.foo', send_type: 'method_call' }. */
  readonly attributes: Readonly<Record<string, string>>;
  readonly source: SourceLocation;
  /** Always set by the reader; optional so that hand-built rules need not say it. */
  readonly appliesTo?: PolicyRuleKind;
}

export interface Policy {
  readonly selector: PolicySelector;
  readonly rules: PolicyRule[];
  readonly source: SourceLocation;
}

/**
 * Where service files are looked for, in order (the first file naming a service wins):
 * a <servicedir> (resolved against the config file's directory), or one of dbus-daemon's
 * standard sets, resolved by the supervisor where the environment is known.
 */
export type ServiceDirConfig =
  | { readonly kind: 'dir'; readonly path: string; readonly source: SourceLocation }
  | { readonly kind: 'standard-session' | 'standard-system'; readonly source: SourceLocation };

export interface BusConfig {
  /** The last <type> wins. */
  type?: string;
  /**
   * Every <listen> address, in file order (each may be a ';'-separated list). Not checked
   * while reading, as dbus-daemon does not: checkListenAddresses does that before listening.
   */
  listen: string[];
  /** Where each entry of `listen` was written (same order); absent in hand-built configs. */
  listenSources?: SourceLocation[];
  /** Allowed SASL mechanisms; empty means all that ferrybus knows. */
  auth: string[];
  /** Known limits by dbus-daemon name; the last <limit> of a name wins. */
  limits: Record<string, number>;
  policies: Policy[];
  /** Everything read but not acted on, each ending with "(file:line)". */
  warnings: string[];
  /** Files read, root first: what a reload should watch. */
  files: string[];
  /** <includedir> directories consulted, existing or not: new files there also matter. */
  directories: string[];
  /** <servicedir>, <standard_session_servicedirs/>, <standard_system_servicedirs/> in file order. */
  serviceDirs?: ServiceDirConfig[];
}
