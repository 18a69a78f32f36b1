/**
 * D-Bus address helpers. Values are escaped the way libdbus' dbus_address_escape_value does:
 * every byte outside [-0-9A-Za-z_/.\\*] becomes %XX.
 */
const OPTIONALLY_ESCAPED = /^[-0-9A-Za-z_/.\\*]$/;

export function escapeAddressValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += OPTIONALLY_ESCAPED.test(ch) ? ch : `%${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

export function unixPathAddress(socketPath: string): string {
  return `unix:path=${escapeAddressValue(socketPath)}`;
}
