/*
 * Real Secure Boot v2 signatures for the C tests: ECDSA P-256 keys made with OpenSSL and
 * signature blocks laid out as `espsecure.py sign_data --version 2` writes them (version 3,
 * curve id 2, point and r, s little-endian, CRC-32 of the first 1196 bytes), so that the core's
 * policy is tested against the same bytes a chip would see. ECDSA rather than RSA-3072 only
 * because a key takes milliseconds to make.
 */
#ifndef TEST_SIGN_H
#define TEST_SIGN_H

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "ble_ota_sbv2.h"
#include "image.h"

typedef struct {
    EVP_PKEY *pkey;
    uint8_t key[BLE_OTA_SBV2_ECDSA_KEY_LEN]; /* curve id, x, y (little-endian), as in a block */
    uint8_t digest[32];                       /* SHA-256 of key: what CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS names */
} test_key_t;

static void ts_reverse(uint8_t *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = in[n - 1u - i];
    }
}

static inline int test_key_new(test_key_t *k)
{
    uint8_t point[65];
    size_t point_len = 0;

    memset(k, 0, sizeof(*k));
    k->pkey = EVP_EC_gen("P-256");
    if (k->pkey == NULL ||
        EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &point_len) != 1 ||
        point_len != 65u || point[0] != 0x04u) {
        return -1;
    }
    k->key[0] = BLE_OTA_SBV2_ECDSA_P256;
    ts_reverse(&k->key[1], &point[1], 32);
    ts_reverse(&k->key[33], &point[33], 32);
    host_sha256(k->key, sizeof(k->key), k->digest);
    return 0;
}

static inline void test_key_free(test_key_t *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

/* One signature block by k over image_digest. */
static inline int test_sign_block(const test_key_t *k, const uint8_t image_digest[32], uint8_t *block)
{
    uint8_t der[80];
    size_t der_len = sizeof(der);
    const uint8_t *p = der;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);
    ECDSA_SIG *sig = NULL;
    uint8_t be[32];
    uint32_t crc;
    int rc = -1;

    memset(block, 0, BLE_OTA_SIG_BLOCK_LEN);
    block[0] = BLE_OTA_SBV2_MAGIC;
    block[1] = BLE_OTA_SBV2_VERSION_ECDSA;
    memcpy(block + BLE_OTA_SBV2_DIGEST_AT, image_digest, 32);
    memcpy(block + BLE_OTA_SBV2_KEY_AT, k->key, sizeof(k->key));
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
        EVP_PKEY_sign(ctx, der, &der_len, image_digest, 32) != 1 ||
        (sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) == NULL) {
        goto out;
    }
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), be, 32) != 32) {
        goto out;
    }
    ts_reverse(block + BLE_OTA_SBV2_ECDSA_SIG_AT, be, 32);
    if (BN_bn2binpad(ECDSA_SIG_get0_s(sig), be, 32) != 32) {
        goto out;
    }
    ts_reverse(block + BLE_OTA_SBV2_ECDSA_SIG_AT + 32, be, 32);
    crc = (uint32_t)crc32(0, block, BLE_OTA_SBV2_CRC_AT);
    block[BLE_OTA_SBV2_CRC_AT] = (uint8_t)crc;
    block[BLE_OTA_SBV2_CRC_AT + 1] = (uint8_t)(crc >> 8);
    block[BLE_OTA_SBV2_CRC_AT + 2] = (uint8_t)(crc >> 16);
    block[BLE_OTA_SBV2_CRC_AT + 3] = (uint8_t)(crc >> 24);
    rc = 0;
out:
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/*
 * Signs img[0, len) in place as espsecure does: 0xFF up to a 4 KB boundary, then the signature
 * sector (a block per key, 0xFF after). Returns the signed length (cap must hold it), 0 on error.
 * *digest_out, if given, gets the digest the signatures cover.
 */
static inline size_t test_sign_image(uint8_t *img, size_t len, size_t cap, const test_key_t *const *keys, int n_keys,
                                     uint8_t digest_out[32])
{
    size_t at = (len + BLE_OTA_SBV2_SECTOR - 1u) / BLE_OTA_SBV2_SECTOR * BLE_OTA_SBV2_SECTOR;
    uint8_t digest[32];

    if (at + BLE_OTA_SBV2_SECTOR > cap || n_keys < 1 || n_keys > 3) {
        return 0;
    }
    memset(img + len, 0xFF, at + BLE_OTA_SBV2_SECTOR - len);
    host_sha256(img, at, digest);
    for (int i = 0; i < n_keys; i++) {
        if (test_sign_block(keys[i], digest, img + at + (size_t)i * BLE_OTA_SIG_BLOCK_LEN) != 0) {
            return 0;
        }
    }
    if (digest_out != NULL) {
        memcpy(digest_out, digest, 32);
    }
    return at + BLE_OTA_SBV2_SECTOR;
}

#endif /* TEST_SIGN_H */
