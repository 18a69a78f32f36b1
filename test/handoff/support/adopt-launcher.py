#!/usr/bin/python3
"""Plays the old image of a handoff, so a test can hand the new image any document it likes.

Creates the listening socket at --socket, prints `listening`, accepts --clients connections
(the test connects them), then execs (same PID, as a real handoff does) the command after `--`
with the listening socket and the accepted connections inherited. In the command and in the
document, these placeholders are replaced first:
  {pid}  this process's PID (the document's `pid`)     {listen}  the listening socket's fd
  {fd0} {fd1} ...  the accepted connections' fds, in the order the clients connected
With --template FILE the document is FILE with the placeholders replaced, written to
--document; without it --document is handed over exactly as it is (e.g. a sparse giant file).
"""
import argparse
import os
import socket
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--clients", type=int, default=0)
    parser.add_argument("--document", required=True)
    parser.add_argument("--template")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(opts.socket)
    os.chmod(opts.socket, 0o777)
    listener.listen(64)
    print("listening", flush=True)
    accepted = []
    for _ in range(opts.clients):
        conn, _addr = listener.accept()
        accepted.append(conn)

    values = {"pid": str(os.getpid()), "listen": str(listener.fileno())}
    for i, conn in enumerate(accepted):
        values["fd%d" % i] = str(conn.fileno())

    def fill(text):
        for key, value in values.items():
            text = text.replace("{%s}" % key, value)
        return text

    if opts.template:
        with open(opts.template, encoding="utf-8") as f:
            text = f.read()
        # As an old image writes it: 0600 (the new image refuses a document others can read).
        fd = os.open(opts.document, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(fill(text))
    for sock in [listener] + accepted:
        os.set_inheritable(sock.fileno(), True)
    argv = [fill(a) for a in command]
    print("exec " + " ".join(argv), flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
