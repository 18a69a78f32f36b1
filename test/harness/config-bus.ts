import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { unixPathAddress } from './address.js';
import type { BusKind } from './bus-kind.js';
import { REPO_ROOT } from './fixtures.js';
import { startLongRunning } from './long-running.js';
import { type RunningBus, waitForAddressLine } from './running-bus.js';
import { makeTempDir, removeTempDir } from './temp-dir.js';

/**
 * Starts ferrybus or dbus-daemon on a busconfig the test writes (`@LISTEN@` in it becomes the
 * socket's address), in a directory other users may enter: the tests connect as several uids.
 */
export async function startBusWithConfig(
  kind: BusKind,
  configText: (listen: string) => string,
  /** More files to write next to the config first, by relative path (e.g. an <includedir>'s). */
  files: Readonly<Record<string, string>> = {},
  /** More command-line flags, given to either bus (e.g. --systemd-activation). */
  extraArgs: readonly string[] = [],
): Promise<RunningBus & { configFile: string; dir: string }> {
  if (kind === 'dbus-broker') throw new Error('dbus-broker reads no busconfig; its launcher compiles the policy');
  const dir = await makeTempDir(`ferrybus-policy-${kind}`);
  await chmod(dir, 0o755);
  const socketPath = path.join(dir, 'bus');
  const configFile = path.join(dir, 'bus.conf');
  await writeFile(configFile, configText(unixPathAddress(socketPath)));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  const [file, args]: [string, string[]] = kind === 'ferrybus'
    ? [process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'), 'daemon', '--nofork', '--print-address=1', `--config-file=${configFile}`, ...extraArgs]]
    : ['dbus-daemon', ['--nofork', '--print-address=1', `--config-file=${configFile}`, ...extraArgs]];
  const proc = startLongRunning(file, args);
  let address: string;
  try {
    address = await waitForAddressLine(proc);
  } catch (err) {
    await proc.stop();
    await removeTempDir(dir);
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    kind,
    address,
    socketPath,
    configFile,
    dir,
    pid: proc.pid,
    process: proc,
    stop() {
      stopped ??= (async () => {
        await proc.stop();
        await removeTempDir(dir);
      })();
      return stopped;
    },
  };
}
