import { describe, expect, it } from 'vitest';
import { parseGattLayout } from './gatt-layout.ts';

const SERVICES = [
  {
    name: 'ota',
    uuid: 'd6f1d96d-594c-4c53-b1c6-144a1dfde6d8',
    characteristics: [
      {
        id: 0,
        name: 'control',
        uuid: '7ad671aa-21c0-46a4-b722-270e3ae3d830',
        properties: ['write', 'notify'],
      },
    ],
  },
];

describe('parseGattLayout (what --gatt-json prints)', () => {
  it('takes the layout and the receive buffering the firmware is configured with', () => {
    const layout = parseGattLayout(
      JSON.stringify({ services: SERVICES, controller: { aclRxBuffers: 128 } }),
      'ble-ota-device',
    );
    expect(layout.controller).toEqual({ aclRxBuffers: 128 });
    expect(layout.services[0]?.characteristics[0]?.properties).toEqual(['write', 'notify']);
  });

  it('leaves the controller out when an older device program does not declare it', () => {
    expect(parseGattLayout(JSON.stringify({ services: SERVICES }), 'dev')).not.toHaveProperty(
      'controller',
    );
  });

  it('names the program, the field and the fix when the output is wrong', () => {
    expect(() => parseGattLayout('{"services":', '/x/ble-ota-device')).toThrow(
      /\/x\/ble-ota-device --gatt-json printed something that is not JSON .*rebuild the device program/,
    );
    expect(() =>
      parseGattLayout(
        JSON.stringify({ services: SERVICES, controller: { aclRxBuffers: 0 } }),
        'dev',
      ),
    ).toThrow(/dev --gatt-json does not describe a GATT layout: controller\.aclRxBuffers: /);
    const badProperty = [
      { ...SERVICES[0], characteristics: [{ id: 1, uuid: '2a00', properties: ['shout'] }] },
    ];
    expect(() => parseGattLayout(JSON.stringify({ services: badProperty }), 'dev')).toThrow(
      /services\.0\.characteristics\.0\.properties\.0/,
    );
  });
});
