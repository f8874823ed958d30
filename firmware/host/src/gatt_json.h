#ifndef HOST_GATT_JSON_H
#define HOST_GATT_JSON_H

#include <stdio.h>

/* Writes the GATT layout declared in ble_ota_gatt.h as one line of JSON (Contract B). */
int host_gatt_json_write(FILE *out);

#endif
