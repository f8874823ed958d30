/* The ESP32 family members the host build can pretend to be. */
#ifndef HOST_CHIP_H
#define HOST_CHIP_H

#include <stdint.h>

typedef struct {
    const char *name;          /* command-line name: "esp32s3" */
    const char *model;         /* what esp_chip_info/IDF_TARGET shows users: "ESP32-S3" */
    uint16_t chip_id;          /* esp_chip_id_t in the image header */
    uint32_t drom_base;        /* SOC_DROM_LOW: where segment 0 (rodata with esp_app_desc_t) is mapped */
    uint32_t drom_size;
    uint32_t bootloader_offset;
    uint16_t chip_rev_full;    /* revision of the simulated silicon, major * 100 + minor */
    uint16_t max_chip_rev_full;/* what IDF v5 writes into app headers for this chip */
    int cores;
    uint32_t cpu_freq_hz;
    const char *spi_speed;     /* as the bootloader prints it */
    /* ROM banner, printed before the reset line */
    const char *rom_banner;
    const char *rst_poweron;
    const char *rst_sw;
    const char *rom_after_rst; /* lines between the reset line and the load lines */
    uint32_t bl_load_addr;     /* where the ROM loads the 2nd stage bootloader's first segment */
} host_chip_t;

const host_chip_t *host_chip_by_name(const char *name);
const host_chip_t *host_chip_by_id(uint16_t chip_id);
/* Space-separated list of valid names, for error messages. */
const char *host_chip_names(void);

#endif
