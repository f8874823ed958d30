/*
 * ESP-IDF Secure Boot v2 signature checks for the host port, as the bootloader and
 * esp_secure_boot_verify_signature() make them on the chip (esp_secure_boot.h,
 * ets_secure_boot_sig_block_t): the signed data is the image padded to a 4 KB sector, followed
 * by a 4 KB signature sector of up to three 1216-byte blocks (RSA-3072-PSS or ECDSA P-256),
 * each with its own public key. The cryptography is OpenSSL's (libcrypto), as mbedTLS's on the chip.
 */
#ifndef HOST_SBV2_H
#define HOST_SBV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_SBV2_SECTOR 4096u
#define HOST_SBV2_BLOCK 1216u
#define HOST_SBV2_MAX_KEYS 3

/*
 * The one cryptographic step of a Secure Boot v2 check, the host port's verify_block primitive:
 * whether the block's signature (RSA-3072-PSS, or ECDSA P-256) verifies with the block's own
 * public key over `digest`. Which blocks count, and why an image is refused, is the core's policy
 * (ble_ota_sbv2.c), the same as on the chip.
 */
bool host_sbv2_verify_block(const uint8_t *block, const uint8_t digest[32]);

/* Where the signature sector starts, or 0 when `data` does not end in one. */
size_t host_sbv2_sector_offset(const uint8_t *data, size_t len);

#endif
