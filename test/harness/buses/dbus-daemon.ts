import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { unixPathAddress } from '../address.js';
import { startLongRunning } from '../long-running.js';
import { type LaunchedBus, waitForAddressLine } from '../running-bus.js';

/**
 * A permissive session-like config for a bus listening on `address`. dbus-daemon refuses a
 * config without <listen> even when --address is given, so it names the same address.
 * The policy allows everything: without receive_sender="*" dbus-daemon denies method replies
 * (AccessDenied); eavesdrop="true" lets old-style eavesdropping monitors work.
 */
export const permissiveConfig = (address: string): string => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <auth>EXTERNAL</auth>
  <listen>${address}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*" eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

export async function launchDbusDaemon(dir: string, socketPath: string): Promise<LaunchedBus> {
  const configFile = path.join(dir, 'bus.conf');
  await writeFile(configFile, permissiveConfig(unixPathAddress(socketPath)));
  // `--print-address=1`, not the bare flag: the bare flag takes the next argument as the fd.
  const proc = startLongRunning('dbus-daemon', [
    '--nofork',
    '--print-address=1',
    `--config-file=${configFile}`,
    `--address=${unixPathAddress(socketPath)}`,
  ]);
  const address = await waitForAddressLine(proc);
  return { address, pid: proc.pid, process: proc };
}
