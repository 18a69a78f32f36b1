/**
 * The file descriptors that travel with one message (unix fd passing), held by the bus until
 * every receiver has them. Reference counted: the message holds one reference while it is
 * routed, and each outbound queue it waits in holds one until its first byte (which carries the
 * fds) is sent or the queue is discarded. The last release closes each fd exactly once.
 *
 * Pure: the transport gives the close function, so the bus core never makes a system call.
 */
export class UnixFds {
  private refs = 1;

  constructor(
    readonly fds: readonly number[],
    private readonly closeFd: (fd: number) => void,
  ) {}

  get count(): number {
    return this.fds.length;
  }

  /** Still holding its fds (not every reference released). */
  get open(): boolean {
    return this.refs > 0;
  }

  retain(): void {
    if (this.refs <= 0) throw new Error('UnixFds retained after its fds were closed');
    this.refs++;
  }

  release(): void {
    if (this.refs <= 0) throw new Error('UnixFds released more often than retained');
    if (--this.refs > 0) return;
    for (const fd of this.fds) this.closeFd(fd);
  }
}
