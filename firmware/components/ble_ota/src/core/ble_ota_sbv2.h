/*
 * Which signed images the device takes: the core's one policy, the same on the chip and on the
 * virtual rig. Ports give only primitives (ble_ota_port_v2_t: trusted_keys, sha256_buf,
 * verify_block, slot_read, crc32, sha256_*); everything that decides is here.
 *
 * The format is ESP-IDF's Secure Boot v2 signature sector, as `espsecure.py sign_data
 * --version 2` and `ble-ota sign` append it: the signed data is the image padded with 0xFF to
 * a 4 KB boundary; the 4 KB sector after it opens with up to three 1216-byte signature blocks
 * (ets_secure_boot_sig_block_t in IDF's esp_secure_boot.h), the rest 0xFF.
 */
#ifndef BLE_OTA_SBV2_H
#define BLE_OTA_SBV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ble_ota_port.h"

/* ets_secure_boot_sig_block_t */
#define BLE_OTA_SBV2_MAGIC 0xE7u         /* magic_byte */
#define BLE_OTA_SBV2_VERSION_RSA 0x02u   /* version: RSA-3072-PSS */
#define BLE_OTA_SBV2_VERSION_ECDSA 0x03u /* version: ECDSA */
#define BLE_OTA_SBV2_DIGEST_AT 4u        /* image_digest[32], after magic, version, 2 reserved */
#define BLE_OTA_SBV2_KEY_AT 36u          /* the public key: what a key digest is the SHA-256 of */
#define BLE_OTA_SBV2_RSA_KEY_LEN 776u    /* n[384], e (u32), rinv[384], mdash (u32) */
#define BLE_OTA_SBV2_RSA_SIG_AT (BLE_OTA_SBV2_KEY_AT + BLE_OTA_SBV2_RSA_KEY_LEN) /* signature[384] */
#define BLE_OTA_SBV2_RSA_SIG_LEN 384u
#define BLE_OTA_SBV2_ECDSA_KEY_LEN 65u   /* curve_id, point[64] (x then y, little-endian) */
#define BLE_OTA_SBV2_ECDSA_SIG_AT (BLE_OTA_SBV2_KEY_AT + BLE_OTA_SBV2_ECDSA_KEY_LEN) /* r[32], s[32] */
#define BLE_OTA_SBV2_ECDSA_P256 2u       /* curve_id of P-256; P-192 (1) is not taken */
#define BLE_OTA_SBV2_CRC_AT 1196u        /* block_crc: CRC-32 (esp_rom_crc32_le(0, ...)) of the bytes before it */
#define BLE_OTA_SBV2_SECTOR 4096u        /* the signature sector, and the padding's alignment */

/* Parses CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS into the pinned set; false (nothing pinned) if malformed. */
bool ble_ota_sbv2_pin(const char *text);

/* How many key digests are pinned (0: the platform's trust alone decides). */
size_t ble_ota_sbv2_pinned_count(void);

/*
 * Checks `count` signature blocks as they open a signature sector. With image_digest NULL (a
 * v2 manifest at BEGIN, before any of the image is there) each block is checked over the image
 * digest it carries; otherwise that digest must be image_digest. A block counts when its key is
 * trusted by the platform and pinned (if any key is pinned), its CRC holds, and its signature
 * verifies. BLE_OTA_OK with the digest the signature covers in *verified; BLE_OTA_ERR_UNTRUSTED_KEY
 * when no block is by a key the device trusts; BLE_OTA_ERR_BAD_SIGNATURE when a trusted key's
 * block is damaged, names another digest or does not verify; BLE_OTA_ERR_UNSUPPORTED when the
 * port cannot check signatures. *why is one sentence for the log.
 */
int ble_ota_sbv2_check_blocks(const uint8_t *blocks, size_t count, const uint8_t *image_digest,
                              uint8_t verified[BLE_OTA_SHA256_LEN], const char **why);

/*
 * The image of image_len bytes the open session wrote, read back through the port: it must end
 * in a signature sector (BLE_OTA_ERR_UNSIGNED otherwise), whose blocks are checked over the
 * SHA-256 of everything before it, computed here with the port's sha256_* (no upload digest
 * may be running). Same results as ble_ota_sbv2_check_blocks otherwise.
 */
int ble_ota_sbv2_check_written_image(uint32_t image_len, uint8_t verified[BLE_OTA_SHA256_LEN], const char **why);

/* Whether the port gives what signature checks need (INFO's manifest bit). */
bool ble_ota_sbv2_available(void);

/*
 * END's check, the same for both protocols, before slot_end: with signed updates only, the
 * image_len bytes just written must be signed by a key the device trusts (and pins); logs the
 * verified image digest. Without signed updates only it checks nothing (as esp_ota_end without
 * CONFIG_SECURE_SIGNED_ON_UPDATE). BLE_OTA_OK or a security error with *why for the log.
 */
int ble_ota_sbv2_end_check(uint32_t image_len, const char **why);

/* Resets the pinned set (ble_ota_init). */
void ble_ota_sbv2_reset(void);

#endif /* BLE_OTA_SBV2_H */
