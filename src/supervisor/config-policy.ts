// <policy> and its <allow>/<deny> rules, checked the way dbus-daemon checks them
// (append_rule_from_element in bus/config-parser.c), in the same order, so that a file
// dbus-daemon refuses is refused here with the same reason. On a system bus a rule that is
// misread is a hole: nothing in a policy is skipped with only a warning.
//
// Rules are kept as written (attributes) plus what they apply to; enforcing them is the bus's
// business (src/bus).

import {
  isValidBusName,
  isValidErrorName,
  isValidInterfaceName,
  isValidMemberName,
  isValidObjectPath,
  isValidWellKnownName,
} from '../wire/names.js';
import type { Policy, PolicyRule, PolicyRuleKind, PolicySelector } from './config-types.js';
import { checkAttributes, checkEmpty, checkNoText, invalid, parseLong } from './config-syntax.js';
import type { XmlElement } from './xml.js';

const SEND_ATTRIBUTES = [
  'send_interface', 'send_member', 'send_error', 'send_destination', 'send_destination_prefix',
  'send_path', 'send_type', 'send_broadcast', 'send_requested_reply',
] as const;
const RECEIVE_ATTRIBUTES = [
  'receive_interface', 'receive_member', 'receive_error', 'receive_sender', 'receive_path',
  'receive_type', 'receive_requested_reply',
] as const;
/** Modifiers of send and receive rules. */
const MESSAGE_MODIFIERS = ['eavesdrop', 'max_fds', 'min_fds'] as const;
const OTHER_ATTRIBUTES = ['own', 'own_prefix', 'user', 'group'] as const;
const RULE_ATTRIBUTES: readonly string[] = [
  ...SEND_ATTRIBUTES, ...RECEIVE_ATTRIBUTES, ...MESSAGE_MODIFIERS, ...OTHER_ATTRIBUTES, 'log',
];
const MESSAGE_TYPES = ['method_call', 'method_return', 'signal', 'error'];
/** DBUS_MAXIMUM_MESSAGE_UNIX_FDS: the range of max_fds and min_fds. */
const MAX_MESSAGE_UNIX_FDS = 33554432n;

/** What each name-like attribute must look like to ever match ('*' aside). */
const NAME_CHECKS: Record<string, [(value: string) => boolean, string]> = {
  send_interface: [isValidInterfaceName, 'an interface name'],
  receive_interface: [isValidInterfaceName, 'an interface name'],
  send_member: [isValidMemberName, 'a member name'],
  receive_member: [isValidMemberName, 'a member name'],
  send_error: [isValidErrorName, 'an error name'],
  receive_error: [isValidErrorName, 'an error name'],
  send_path: [isValidObjectPath, 'an object path'],
  receive_path: [isValidObjectPath, 'an object path'],
  send_destination: [isValidBusName, 'a bus name'],
  receive_sender: [isValidBusName, 'a bus name'],
  own: [isValidWellKnownName, 'a well-known bus name'],
  own_prefix: [isValidWellKnownName, 'a well-known bus name'],
  send_destination_prefix: [isValidWellKnownName, 'a well-known bus name'],
};

export type Warn = (message: string, file: string, line: number) => void;

export function readPolicy(file: string, element: XmlElement, warn: Warn): Policy {
  checkAttributes(file, element, ['context', 'user', 'group', 'at_console']);
  const keys = Object.keys(element.attributes);
  if (keys.length !== 1) {
    invalid(file, element, '<policy> element must have exactly one of (context|user|group|at_console) attributes');
  }
  const key = keys[0]!;
  const value = element.attributes[key]!;
  let selector: PolicySelector;
  if (key === 'context') {
    if (value !== 'default' && value !== 'mandatory') {
      invalid(file, element, `context attribute on <policy> must have the value "default" or "mandatory", not "${value}"`);
    }
    selector = { context: value };
  } else if (key === 'at_console') {
    if (value !== 'true' && value !== 'false') {
      invalid(file, element, `Unknown value "${value}" for at_console: it must be "true" or "false"`);
    }
    selector = { atConsole: value === 'true' };
    warn(
      `<policy at_console="${value}"> never matches in ferrybus, which cannot tell who is at the console (dbus-daemon asks systemd-logind whether the user has a seat): its rules do not apply`,
      file,
      element.line,
    );
  } else {
    // dbus-daemon warns about an unknown user or group and drops the policy; an empty name
    // can only be a mistake.
    if (value.length === 0) invalid(file, element, `policy ${key} must not be empty`);
    selector = key === 'user' ? { user: value } : { group: value };
  }
  checkNoText(file, element);
  const rules: PolicyRule[] = [];
  for (const child of element.children) {
    if (child.kind === 'text') continue;
    if (child.name !== 'allow' && child.name !== 'deny') {
      invalid(file, child, `element <${child.name}> is not allowed inside <policy>; only <allow> and <deny> are`);
    }
    const appliesTo = checkRule(file, child, warn);
    if (appliesTo === 'connect' && ('user' in selector || 'group' in selector)) {
      const per = 'user' in selector ? 'per-user' : 'per-group';
      invalid(file, child, `<${child.name}> rule cannot be ${per} because it has bus-global semantics (user and group rules belong in context="default" or context="mandatory")`);
    }
    rules.push({ kind: child.name, attributes: child.attributes, source: { file, line: child.line }, appliesTo });
  }
  return { selector, rules, source: { file, line: element.line } };
}

function trueFalse(file: string, element: XmlElement, attribute: string): void {
  const value = element.attributes[attribute];
  if (value !== undefined && value !== 'true' && value !== 'false') {
    invalid(file, element, `Bad value "${value}" for ${attribute} attribute, must be true or false`);
  }
}

function fdCount(file: string, element: XmlElement, attribute: string): void {
  const value = element.attributes[attribute];
  if (value === undefined) return;
  const parsed = parseLong(value);
  if (parsed === undefined || parsed.value < 0n || parsed.value > MAX_MESSAGE_UNIX_FDS) {
    invalid(file, element, `Bad value "${value}" for ${attribute} attribute, must be an integer in range 0 to ${MAX_MESSAGE_UNIX_FDS} inclusive`);
  }
}

/** Checks one <allow> or <deny> and says what it applies to. */
function checkRule(file: string, element: XmlElement, warn: Warn): PolicyRuleKind {
  const name = element.name;
  const a = element.attributes;
  checkAttributes(file, element, RULE_ATTRIBUTES);
  checkEmpty(file, element);
  const has = (key: string): boolean => a[key] !== undefined;
  const anySend = SEND_ATTRIBUTES.some(has);
  // <allow eavesdrop="true"/> means <allow receive_sender="*" eavesdrop="true"/>.
  const anyReceive = RECEIVE_ATTRIBUTES.some(has) || (!anySend && has('eavesdrop'));
  const anyMessage = anySend || anyReceive || MESSAGE_MODIFIERS.some(has);
  const others = OTHER_ATTRIBUTES.filter(has).length;

  if (!anySend && !anyReceive && others === 0) invalid(file, element, `Element <${name}> must have one or more attributes`);
  if ((has('send_member') && !has('send_interface') && !has('send_path')) ||
      (has('receive_member') && !has('receive_interface') && !has('receive_path'))) {
    invalid(file, element, `On element <${name}>, if you specify a member you must specify an interface or a path. Keep in mind that not all messages have an interface field.`);
  }
  if (Number(anyMessage) + others > 1) {
    invalid(file, element, `Invalid combination of attributes on element <${name}>: own, own_prefix, user, group and the message-related attributes cannot be combined`);
  }
  if (anySend && anyReceive) {
    invalid(file, element, `Invalid combination of attributes on element <${name}>: send and receive attributes cannot be combined`);
  }
  if ((has('send_member') || has('send_interface')) && has('send_error')) {
    invalid(file, element, `Invalid combination of attributes on element <${name}>: send_error cannot be combined with send_member or send_interface`);
  }
  if (has('send_destination') && has('send_destination_prefix')) {
    invalid(file, element, `Invalid combination of attributes on element <${name}>: send_destination cannot be combined with send_destination_prefix`);
  }
  if ((has('receive_member') || has('receive_interface')) && has('receive_error')) {
    invalid(file, element, `Invalid combination of attributes on element <${name}>: receive_error cannot be combined with receive_member or receive_interface`);
  }

  let appliesTo: PolicyRuleKind;
  if (anySend || anyReceive) {
    const type = anySend ? 'send_type' : 'receive_type';
    const messageType = a[type];
    if (messageType !== undefined && messageType !== '*' && !MESSAGE_TYPES.includes(messageType)) {
      invalid(file, element, `Bad message type "${messageType}" for ${type}: it must be ${MESSAGE_TYPES.join(', ')} or *`);
    }
    trueFalse(file, element, 'eavesdrop');
    if (anySend) {
      trueFalse(file, element, 'send_broadcast');
      const destination = a.send_destination;
      if (destination !== undefined && destination !== '*' && a.send_broadcast === 'true') {
        invalid(file, element, `Rule with send_broadcast="true" and send_destination="${destination}" cannot match anything`);
      }
      trueFalse(file, element, 'send_requested_reply');
    } else {
      trueFalse(file, element, 'receive_requested_reply');
    }
    fdCount(file, element, 'max_fds');
    fdCount(file, element, 'min_fds');
    appliesTo = anySend ? 'send' : 'receive';
  } else {
    appliesTo = has('own') || has('own_prefix') ? 'own' : 'connect';
  }

  // dbus-daemon accepts these as written; say where a rule can never match.
  for (const [key, [valid, what]] of Object.entries(NAME_CHECKS)) {
    const value = a[key];
    if (value === undefined || valid(value)) continue;
    // '*' is the wildcard of the exact attributes; a prefix of '*' is just a bad name.
    if (value === '*' && !key.endsWith('_prefix')) continue;
    warn(`${key}="${value}" on <${name}> is not ${what}, so the rule never matches anything`, file, element.line);
  }
  if (a.log !== undefined && a.log !== 'true' && a.log !== 'false') {
    warn(`log="${a.log}" on <${name}> is read as "false", as dbus-daemon reads anything but "true"`, file, element.line);
  }
  return appliesTo;
}

