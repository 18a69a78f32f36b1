// A bus client in its own process, so that `ferrybus names|connections|queue` have a real pid
// and command line to report. Plain JavaScript over dbus-next (an independent client).
//
//   node bus-peer.mjs ADDRESS [--name NAME[:FLAGS]]... [--match RULE]... [--hang MEMBER]
//
// --name requests a well-known name with RequestName flags (a number; queueing is fine),
// --match adds a match rule, --hang leaves calls to MEMBER unanswered (a pending call).
// Prints "ready <unique name>" once everything is in place, then stays connected until killed.
import dbus from 'dbus-next';

const [address, ...rest] = process.argv.slice(2);
const names = [];
const matches = [];
const hang = new Set();
for (let i = 0; i < rest.length; i += 2) {
  const [flag, value] = [rest[i], rest[i + 1]];
  if (flag === '--name') names.push(value);
  else if (flag === '--match') matches.push(value);
  else if (flag === '--hang') hang.add(value);
  else throw new Error(`unknown argument ${flag}`);
}

const bus = dbus.sessionBus({ busAddress: address });
await new Promise((resolve, reject) => {
  bus.once('connect', resolve);
  bus.once('error', reject);
});
bus.addMethodHandler((msg) => hang.has(msg.member));
const replies = [];
for (const spec of names) {
  const [name, flags] = spec.split(':');
  replies.push(await bus.requestName(name, Number(flags ?? 0)));
}
for (const rule of matches) {
  await bus.call(
    new dbus.Message({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'AddMatch',
      signature: 's',
      body: [rule],
    }),
  );
}
process.stdout.write(`ready ${bus.name} ${replies.join(',')}\n`);
process.on('SIGTERM', () => process.exit(0));
