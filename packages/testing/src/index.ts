/**
 * Test doubles of the update client, kept out of the production packages: the fake transport
 * and its device registry, the fake baseline device, and the TypeScript fake of the v2 device.
 * `./support` has the vitest helpers the protocol package's tests share.
 */
export * from './fake-transport.ts';
export * from './v2-fake-device.ts';
