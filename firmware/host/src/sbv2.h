/*
 * ESP-IDF Secure Boot v2 signature checks for the host port, as the bootloader and
 * esp_secure_boot_verify_signature() make them on the chip (esp_secure_boot.h,
 * ets_secure_boot_sig_block_t): the signed data is the image padded to a 4 KB sector, followed
 * by a 4 KB signature sector of up to three 1216-byte blocks (RSA-3072-PSS or ECDSA P-256),
 * each with its own public key; a block counts only when the SHA-256 of its key part is one of
 * the trusted key digests. The cryptography is OpenSSL's (libcrypto), as mbedTLS's on the chip.
 */
#ifndef HOST_SBV2_H
#define HOST_SBV2_H

#include <stddef.h>
#include <stdint.h>

#define HOST_SBV2_SECTOR 4096u
#define HOST_SBV2_BLOCK 1216u
#define HOST_SBV2_MAX_KEYS 3

typedef enum {
    HOST_SBV2_OK = 0,
    HOST_SBV2_UNSIGNED,      /* no signature sector at the end of the data */
    HOST_SBV2_BAD_SIGNATURE, /* a block of a trusted key is damaged, names another digest, or fails */
    HOST_SBV2_UNTRUSTED_KEY, /* every block is signed by a key whose digest is not trusted */
} host_sbv2_result_t;

/*
 * Checks `len` bytes (image + padding + signature sector) against the trusted key digests.
 * On anything but OK, err says why, naming the block.
 */
host_sbv2_result_t host_sbv2_verify(const uint8_t *data, size_t len, const uint8_t (*trusted)[32], int n_trusted,
                                    char *err, size_t errlen);

/*
 * Checks `count` signature blocks on their own (a v2 manifest at BEGIN, before any of the image
 * is there): the first block by a trusted key whose CRC holds and whose signature verifies over
 * the image digest it carries gives OK and that digest.
 */
host_sbv2_result_t host_sbv2_verify_blocks(const uint8_t *blocks, size_t count, const uint8_t (*trusted)[32],
                                           int n_trusted, uint8_t digest[32], char *err, size_t errlen);

/* Where the signature sector starts, or 0 when `data` does not end in one. */
size_t host_sbv2_sector_offset(const uint8_t *data, size_t len);

#endif
