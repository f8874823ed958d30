/*
 * The host port of the BLE OTA core: esp_ota_ops semantics over the file-backed flash,
 * notifications and log lines as frames, restart as a RESET frame and process exit.
 */
#ifndef HOST_PORT_H
#define HOST_PORT_H

#include "ble_ota_port.h"
#include "chip.h"
#include "otadata.h"

#include <openssl/evp.h>
#include <zlib.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * What the firmware's Kconfig says about updates (CONFIG_BLE_OTA_REQUIRE_SIGNED,
 * CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS, CONFIG_BLE_OTA_ANTI_ROLLBACK), and the eFuse that holds
 * the lowest secure_version the device still boots (esp_efuse_read_secure_version on a chip;
 * here a file beside the flash file).
 */
typedef struct {
    bool require_signed;
    uint8_t trusted[3][32];
    int n_trusted;
    bool anti_rollback;
    char efuse_path[600];
    ble_ota_link_security_t link_security; /* CONFIG_BLE_OTA_LINK_SECURITY */
    bool allow_downgrade;                  /* CONFIG_BLE_OTA_ALLOW_DOWNGRADE */
} host_security_t;

typedef struct host_port {
    host_dev_t dev;
    const host_chip_t *chip;
    int running_slot; /* OTA slot the bootloader started us from */
    char version[33]; /* esp_app_desc_t.version of the running image */

    /* update session (esp_ota_begin .. esp_ota_end) */
    bool open;
    bool need_erase; /* OTA_WITH_SEQUENTIAL_WRITES: erase sectors as the writes reach them */
    int target_slot;
    uint32_t wrote;
    int finished_slot; /* slot of the last successful slot_end, -1 if none */

    EVP_MD_CTX *sha;

    /* protocol v2 */
    uint8_t running_sha256[32]; /* of the running image as it lies in flash, appended digest included */
    bool running_sha256_ok;
    uint32_t running_len; /* bytes running_sha256 covers: a delta update's base */
    z_stream zs;
    bool zs_running;
    uint8_t zout[4096];

    host_security_t sec;

    bool restart_pending;
    uint64_t restart_at_ns;
    /* Called instead of sending RESET and exiting; tests use it. */
    void (*on_restart)(struct host_port *hp, uint8_t reason);
} host_port_t;

/* Binds hp to an open flash and the running slot; fills *port with the host functions. */
int host_port_init(host_port_t *hp, ble_ota_port_t *port, host_flash_t *flash, const host_chip_t *chip,
                   int running_slot, char *err, size_t errlen);
void host_port_deinit(host_port_t *hp);

/* Fills *v2 with the host's protocol v2 functions (ble_ota_v2_attach) and hashes the running
 * image for INFO and "already installed". LINK_REQUEST frames announce the link requests. */
void host_port_v2(host_port_t *hp, ble_ota_port_v2_t *v2);

/* The secure_version eFuse: 0 when never written. */
uint32_t host_port_min_secure_version(const host_port_t *hp);

/* Sends the RESET frame and exits(0), like esp_restart(). */
void host_port_restart_now(host_port_t *hp, uint8_t reason);

/* ms until a scheduled restart is due (0 if due now), or -1 if none is scheduled. */
int host_port_restart_wait_ms(const host_port_t *hp);

#endif
