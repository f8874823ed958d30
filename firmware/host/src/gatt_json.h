#ifndef HOST_GATT_JSON_H
#define HOST_GATT_JSON_H

#include <stdio.h>

#include "ble_ota_gatt.h"

/* Writes the GATT layout declared in ble_ota_gatt.h as one line of JSON (Contract B),
 * followed by what the rig must know of the BLE controller: acl_rx_buffers is the NimBLE
 * host's ACL-from-LL buffer count (CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT), the
 * packets the controller can hand over while the host task is stalled by a flash erase. */
/* Characteristics with BLE_OTA_ACCESS_SECURED_WRITE carry "writeSecurity": the link security
 * their writes need on this build (CONFIG_BLE_OTA_LINK_SECURITY, --link-security here), which
 * the rig's ATT server enforces as NimBLE enforces BLE_GATT_CHR_F_WRITE_ENC / _AUTHEN. */
int host_gatt_json_write(FILE *out, unsigned acl_rx_buffers, unsigned preferred_mtu,
                         ble_ota_link_security_t link_security);

#endif
