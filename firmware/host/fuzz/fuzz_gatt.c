/*
 * libFuzzer target: the core's GATT entry points (ble_ota_on_*) for the baseline and the v2
 * characteristics, with the writer (ble_ota_writer_run_once) run between events as the device
 * runs it. gatt_harness.c holds the fake port and the invariants; README.md the input format.
 */
#include <stddef.h>
#include <stdint.h>

#include "gatt_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_gatt_run(data, size);
    return 0;
}
