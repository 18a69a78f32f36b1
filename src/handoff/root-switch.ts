import * as fs from 'node:fs';
import { chdir, chroot, fchdir } from '../sys/libc.js';
import { FerryError } from '../util/errors.js';

/**
 * Enters another root for the preflight and the exec, keeping a way back: an
 * fd on the old root and one on the old working directory. If anything fails
 * before execve, `back()` returns the process to where it was.
 */
export class RootSwitch {
  private constructor(
    readonly root: string,
    private readonly oldRootFd: number,
    private readonly oldCwdFd: number,
  ) {}

  static enter(root: string): RootSwitch {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(root);
    } catch (err) {
      throw new FerryError('HandoffBadRoot', `root ${root} does not exist: ${(err as Error).message}`);
    }
    if (!stat.isDirectory()) throw new FerryError('HandoffBadRoot', `root ${root} is not a directory`);
    const oldRootFd = fs.openSync('/', 'r');
    const oldCwdFd = fs.openSync('.', 'r');
    try {
      chroot(root);
      chdir('/');
    } catch (err) {
      fs.closeSync(oldRootFd);
      fs.closeSync(oldCwdFd);
      throw new FerryError('HandoffBadRoot', `cannot enter root ${root}: ${(err as Error).message}`);
    }
    return new RootSwitch(root, oldRootFd, oldCwdFd);
  }

  /** Returns to the old root and working directory. */
  back(): void {
    fchdir(this.oldRootFd);
    chroot('.');
    fchdir(this.oldCwdFd);
    this.release();
  }

  release(): void {
    fs.closeSync(this.oldRootFd);
    fs.closeSync(this.oldCwdFd);
  }
}
