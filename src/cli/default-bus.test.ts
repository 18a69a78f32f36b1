import { describe, expect, it } from 'vitest';
import { defaultClientAddress, SYSTEM_BUS_ADDRESS, systemBusAddress } from './default-bus.js';

describe('the address the operator commands try when not told', () => {
  it('is the quick-start bus of the caller, then the system bus', () => {
    expect(defaultClientAddress({ uid: 0, env: {} })).toBe('unix:path=/run/ferrybus/bus;unix:path=/run/dbus/system_bus_socket');
    expect(defaultClientAddress({ uid: 1000, env: { XDG_RUNTIME_DIR: '/run/user/1000' } }))
      .toBe('unix:path=/run/user/1000/ferrybus/bus;unix:path=/run/dbus/system_bus_socket');
  });

  it('takes the system bus from DBUS_SYSTEM_BUS_ADDRESS as sd-bus and libdbus do, unless it is not an address', () => {
    expect(systemBusAddress({ DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/tmp/x' })).toBe('unix:path=/tmp/x');
    expect(systemBusAddress({ DBUS_SYSTEM_BUS_ADDRESS: 'nonsense' })).toBe(SYSTEM_BUS_ADDRESS);
    expect(systemBusAddress({ DBUS_SYSTEM_BUS_ADDRESS: '' })).toBe(SYSTEM_BUS_ADDRESS);
  });
});
