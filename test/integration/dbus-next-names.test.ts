import { describe, expect, it } from 'vitest';
import { NAME_FLAG, RELEASE_NAME_REPLY, REQUEST_NAME_REPLY } from '../harness/dbus-next-client.js';
import { connectNext, watchName } from '../harness/next-clients.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const { ALLOW_REPLACEMENT, REPLACE_EXISTING, DO_NOT_QUEUE } = NAME_FLAG;
const { PRIMARY_OWNER, IN_QUEUE, EXISTS, ALREADY_OWNER } = REQUEST_NAME_REPLY;

let counter = 0;
/** A fresh well-known name per test, so tests never see each other's owners. */
const freshName = () => `org.ferrybus.Test.Names.N${++counter}`;

describe('well-known names as dbus-next clients see them', () => {
  const bus = useBus();
  const defer = useCleanup();
  const connect = () => connectNext(bus(), defer);

  it('RequestName answers PRIMARY_OWNER, ALREADY_OWNER, IN_QUEUE or EXISTS according to flags', async () => {
    const name = freshName();
    const watcher = await watchName(bus(), defer, name);
    const [a, b, c] = [await connect(), await connect(), await connect()];

    expect(await a.bus.requestName(name, ALLOW_REPLACEMENT)).toBe(PRIMARY_OWNER);
    await a.waitForSignal('NameAcquired', [name]);
    await watcher.waitForSignal('NameOwnerChanged', [name, '', a.uniqueName]);

    expect(await a.bus.requestName(name, 0)).toBe(ALREADY_OWNER);
    expect(await b.bus.requestName(name, 0)).toBe(IN_QUEUE);
    expect(await c.bus.requestName(name, DO_NOT_QUEUE)).toBe(EXISTS);

    expect(await watcher.driver('GetNameOwner', 's', [name])).toEqual([a.uniqueName]);
    // The owner first, then the queue in request order; DO_NOT_QUEUE left c out.
    expect(await watcher.driver('ListQueuedOwners', 's', [name])).toEqual([[a.uniqueName, b.uniqueName]]);
    expect(b.signals('NameAcquired').filter((s) => s.body[0] === name)).toEqual([]);
  });

  it('ReleaseName promotes the first queued connection, which is told with NameAcquired', async () => {
    const name = freshName();
    const watcher = await watchName(bus(), defer, name);
    const [a, b] = [await connect(), await connect()];
    expect(await a.bus.requestName(name, 0)).toBe(PRIMARY_OWNER);
    expect(await b.bus.requestName(name, 0)).toBe(IN_QUEUE);

    expect(await a.bus.releaseName(name)).toBe(RELEASE_NAME_REPLY.RELEASED);
    await a.waitForSignal('NameLost', [name]);
    await b.waitForSignal('NameAcquired', [name]);
    await watcher.waitForSignal('NameOwnerChanged', [name, a.uniqueName, b.uniqueName]);

    expect(await watcher.driver('GetNameOwner', 's', [name])).toEqual([b.uniqueName]);
    expect(await watcher.driver('ListQueuedOwners', 's', [name])).toEqual([[b.uniqueName]]);
    expect(await a.bus.releaseName(name)).toBe(RELEASE_NAME_REPLY.NOT_OWNER);
    expect(await a.bus.releaseName('org.ferrybus.Test.Names.Nobody')).toBe(RELEASE_NAME_REPLY.NON_EXISTENT);
  });

  it('REPLACE_EXISTING takes a name whose owner allowed replacement; the old owner waits in the queue', async () => {
    const name = freshName();
    const watcher = await watchName(bus(), defer, name);
    const [a, b] = [await connect(), await connect()];
    expect(await a.bus.requestName(name, ALLOW_REPLACEMENT)).toBe(PRIMARY_OWNER);
    expect(await b.bus.requestName(name, REPLACE_EXISTING)).toBe(PRIMARY_OWNER);

    await a.waitForSignal('NameLost', [name]);
    await b.waitForSignal('NameAcquired', [name]);
    await watcher.waitForSignal('NameOwnerChanged', [name, a.uniqueName, b.uniqueName]);
    expect(await watcher.driver('ListQueuedOwners', 's', [name])).toEqual([[b.uniqueName, a.uniqueName]]);
  });

  it('REPLACE_EXISTING only queues when the owner did not allow replacement', async () => {
    const name = freshName();
    const [a, b] = [await connect(), await connect()];
    expect(await a.bus.requestName(name, 0)).toBe(PRIMARY_OWNER);
    expect(await b.bus.requestName(name, REPLACE_EXISTING)).toBe(IN_QUEUE);
    expect(await b.driver('GetNameOwner', 's', [name])).toEqual([a.uniqueName]);
    await a.ping(); // a NameLost, had there been one, would be routed to a before this reply
    expect(a.signals('NameLost')).toEqual([]);
  });

  it('a disconnecting owner loses all its names and the queued connection becomes the owner', async () => {
    const queued = freshName();
    const alone = freshName();
    const watcher = await watchName(bus(), defer, queued);
    const [a, b] = [await connect(), await connect()];
    expect(await a.bus.requestName(queued, 0)).toBe(PRIMARY_OWNER);
    expect(await a.bus.requestName(alone, 0)).toBe(PRIMARY_OWNER);
    expect(await b.bus.requestName(queued, 0)).toBe(IN_QUEUE);

    await a.disconnect();
    await watcher.waitForSignal('NameOwnerChanged', [queued, a.uniqueName, b.uniqueName]);
    await b.waitForSignal('NameAcquired', [queued]);
    expect(await watcher.driver('NameHasOwner', 's', [alone])).toEqual([false]);
    expect(await watcher.driver('NameHasOwner', 's', [a.uniqueName])).toEqual([false]);
    expect(await watcher.driver('ListQueuedOwners', 's', [queued])).toEqual([[b.uniqueName]]);
  });

  it.each([
    [':1.99', 'a unique name'],
    ['org.freedesktop.DBus', "the driver's own name"],
    ['nodots', 'a malformed name'],
  ])('RequestName(%s) is refused with InvalidArgs (%s)', async (name) => {
    const a = await connect();
    // Not bus.requestName: dbus-next validates the name itself before sending.
    await expect(a.driver('RequestName', 'su', [name, 0])).rejects.toMatchObject({
      type: 'org.freedesktop.DBus.Error.InvalidArgs',
    });
  });
});
