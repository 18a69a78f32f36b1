#!/usr/bin/python3
# bench: COUNT method calls, one in flight, each carrying one unix fd (a pipe's write end), to
# NAME (dbus-test-tool echo answers each with an empty reply). Exits 0 when every call was
# answered; prints the first error otherwise. python3-dbus (libdbus) negotiates fd passing.
import os
import sys
import dbus
import dbus.lowlevel

address, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
bus = dbus.bus.BusConnection(address)
r, w = os.pipe()
fd = dbus.types.UnixFd(w)
for i in range(count):
    msg = dbus.lowlevel.MethodCallMessage(name, '/', 'org.example.Bench', 'TakeFd')
    msg.append(fd, signature='h')
    reply = bus.send_message_with_reply_and_block(msg, 30000)
print('done %d' % count)
