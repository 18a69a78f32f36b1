import { readFileSync } from 'node:fs';

/**
 * Debian's own system.conf with every system.d file, listening on `listen` instead of the
 * system socket. It stays root (tests connect as several users to a socket in a private
 * directory), writes no pid file and does not fork.
 */
export function stockSystemConfig(listen: string): string {
  return readFileSync('/usr/share/dbus-1/system.conf', 'utf8')
    .replace(/<listen>[^<]*<\/listen>/, `<listen>${listen}</listen>`)
    .replace(/<user>[^<]*<\/user>/, '')
    .replace(/<pidfile>[^<]*<\/pidfile>/, '')
    .replace(/<fork\/>/, '')
    .replace(/<includedir>system\.d<\/includedir>/, '<includedir>/usr/share/dbus-1/system.d</includedir>')
    .replace(/<include ignore_missing="yes">system-local\.conf<\/include>/, '');
}
