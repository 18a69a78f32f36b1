import { stockSystemConfig } from '../test/harness/stock-system-config.js';

/**
 * The bench's system-bus configuration: Debian's stock system.conf (with every system.d file it
 * includes) listening on the bench socket, plus a dozen rules of the kind distributions ship,
 * among them the holes the echo service and its caller need. The same file is given to
 * ferrybus and dbus-daemon.
 */
export function systemPolicyConfig(listen: string, echoName: string): string {
  return stockSystemConfig(listen).replace('</busconfig>', `${benchRules(echoName)}</busconfig>`);
}

/** A dozen rules like a system.d file's: own, send_destination, send_interface, allow and deny. */
function benchRules(echoName: string): string {
  return `
  <policy user="root">
    <allow own="${echoName}"/>
    <allow own_prefix="org.example.Bench"/>
    <allow send_destination="org.example.Bench.Manager"/>
  </policy>
  <policy context="default">
    <allow send_destination="${echoName}"/>
    <deny send_destination="${echoName}" send_interface="org.example.Bench.Admin"/>
    <allow send_destination="org.example.Bench.Manager" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.example.Bench.Manager" send_interface="org.freedesktop.DBus.Properties" send_member="Get"/>
    <deny send_destination="org.example.Bench.Manager" send_interface="org.example.Bench.Manager" send_member="Reboot"/>
    <allow send_destination="org.example.Bench.Network" send_interface="org.example.Bench.Network"/>
    <deny send_destination="org.example.Bench.Network" send_interface="org.example.Bench.Network" send_member="SetHostname"/>
    <allow receive_sender="org.example.Bench.Network"/>
    <deny send_interface="org.example.Bench.Debug"/>
  </policy>
`;
}
