// Defined once, for this package and the virtual rig alike (see @esp-ble-ota/noble-types).
export type {
  Noble,
  NobleAdvertisement,
  NobleCharacteristic,
  NobleHciInternals,
  NoblePeripheral,
  NobleService,
  NobleState,
} from '@esp-ble-ota/noble-types';
