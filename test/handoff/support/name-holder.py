#!/usr/bin/python3
"""A python3-dbus (libdbus) client that asks for names and reports everything the bus says to it.

  --request NAME:FLAGS   RequestName(NAME, FLAGS), repeatable; prints `requested NAME FLAGS REPLY`
Prints `ready <unique-name>` once every request was answered, then one line per signal the bus
driver sends it (`signal NameAcquired <name>`, `signal NameLost <name>`, ...) and
`disconnected` if the connection is ever lost (it then exits 3). A client that lived through a
handoff unnoticed prints nothing after `ready`.
"""
import argparse
import sys

import dbus
import dbus.bus
import dbus.lowlevel
import dbus.mainloop.glib
from gi.repository import GLib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--request", action="append", default=[])
    opts = parser.parse_args()

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(opts.address)
    bus.set_exit_on_disconnect(False)
    loop = GLib.MainLoop()

    def on_message(_conn, message):
        if not isinstance(message, dbus.lowlevel.SignalMessage):
            return
        if message.get_interface() == "org.freedesktop.DBus.Local" and message.get_member() == "Disconnected":
            print("disconnected", flush=True)
            loop.quit()
            sys.exit(3)
        if message.get_sender() == "org.freedesktop.DBus":
            args = message.get_args_list()
            print("signal %s %s" % (message.get_member(), " ".join(str(a) for a in args)), flush=True)

    bus.add_message_filter(on_message)
    for request in opts.request:
        name, flags = request.rsplit(":", 1)
        reply = bus.request_name(name, int(flags))
        print("requested %s %s %d" % (name, flags, reply), flush=True)
    print("ready %s" % bus.get_unique_name(), flush=True)
    loop.run()


if __name__ == "__main__":
    sys.exit(main())
