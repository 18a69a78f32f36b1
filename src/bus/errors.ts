import { FerryError } from '../util/errors.js';

/** Every D-Bus error name the bus itself sends, in one place. */
export const DBusErrorName = {
  Failed: 'org.freedesktop.DBus.Error.Failed',
  NotSupported: 'org.freedesktop.DBus.Error.NotSupported',
  ServiceUnknown: 'org.freedesktop.DBus.Error.ServiceUnknown',
  NameHasNoOwner: 'org.freedesktop.DBus.Error.NameHasNoOwner',
  UnknownMethod: 'org.freedesktop.DBus.Error.UnknownMethod',
  UnknownInterface: 'org.freedesktop.DBus.Error.UnknownInterface',
  UnknownProperty: 'org.freedesktop.DBus.Error.UnknownProperty',
  PropertyReadOnly: 'org.freedesktop.DBus.Error.PropertyReadOnly',
  MatchRuleInvalid: 'org.freedesktop.DBus.Error.MatchRuleInvalid',
  MatchRuleNotFound: 'org.freedesktop.DBus.Error.MatchRuleNotFound',
  InvalidArgs: 'org.freedesktop.DBus.Error.InvalidArgs',
  LimitsExceeded: 'org.freedesktop.DBus.Error.LimitsExceeded',
  AccessDenied: 'org.freedesktop.DBus.Error.AccessDenied',
  NoReply: 'org.freedesktop.DBus.Error.NoReply',
  AdtAuditDataUnknown: 'org.freedesktop.DBus.Error.AdtAuditDataUnknown',
  SELinuxSecurityContextUnknown: 'org.freedesktop.DBus.Error.SELinuxSecurityContextUnknown',
} as const;

export type DBusErrorName = (typeof DBusErrorName)[keyof typeof DBusErrorName];

/** A documented outcome of a bus operation, sent to the caller as a D-Bus error reply. */
export class BusError extends FerryError {
  constructor(
    readonly dbusName: DBusErrorName | string,
    message: string,
  ) {
    super(dbusName.slice(dbusName.lastIndexOf('.') + 1), message);
  }
}
