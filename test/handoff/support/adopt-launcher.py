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
A binary template (format 2: it starts with the byte 0x89) has them replaced in its JSON part
only, the header's JSON length set to match; the rest of its header (magic, format, section
length) and every byte after the JSON are kept as they are, damage included.
"""
import argparse
import os
import socket
import struct
import sys

HEADER = struct.Struct("<8sIIQ")  # magic, format, JSON length, binary section length


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--clients", type=int, default=0)
    parser.add_argument("--document", required=True)
    parser.add_argument("--template")
    # A file the new image inherits as an old image's spool file would be: {spool} is its fd.
    parser.add_argument("--spool")
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
    inherited = []
    if opts.spool:
        spool = os.open(opts.spool, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(spool, b"queued bytes nobody will read")
        os.unlink(opts.spool)
        os.set_inheritable(spool, True)
        values["spool"] = str(spool)
        inherited.append(spool)
    for i, conn in enumerate(accepted):
        values["fd%d" % i] = str(conn.fileno())

    def fill(text):
        for key, value in values.items():
            text = text.replace("{%s}" % key, value)
        return text

    if opts.template:
        with open(opts.template, "rb") as f:
            data = f.read()
        if data[:1] == b"\x89" and len(data) >= HEADER.size:
            magic, fmt, json_length, section_length = HEADER.unpack_from(data)
            json = fill(data[HEADER.size:HEADER.size + json_length].decode("utf-8")).encode("utf-8")
            rest = data[HEADER.size + json_length:]
            data = HEADER.pack(magic, fmt, len(json), section_length) + json + rest
        else:
            data = fill(data.decode("utf-8")).encode("utf-8")
        # As an old image writes it: 0600 (the new image refuses a document others can read).
        fd = os.open(opts.document, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    for sock in [listener] + accepted:
        os.set_inheritable(sock.fileno(), True)
    argv = [fill(a) for a in command]
    print("exec " + " ".join(argv), flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
