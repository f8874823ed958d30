/*
 * What the fuzz targets, the seed generator and the fake ports share: the loud failure of an
 * invariant, the fake signing keys, and small byte helpers.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An invariant does not hold: says which on stderr and aborts, so libFuzzer keeps the input. */
void fz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
#define FZ_CHECK(cond, ...)       \
    do {                          \
        if (!(cond)) {            \
            fz_fail(__VA_ARGS__); \
        }                         \
    } while (0)

/* The fake signing keys, laid out as Secure Boot v2 signature blocks carry them: A and B are
 * RSA-3072 keys (n, e, rinv, mdash: 776 bytes), C an ECDSA P-256 key (curve id 2, x, y: 65
 * bytes). Only their bytes matter: the fake verify_block takes a block's signature when its
 * first 32 bytes are SHA-256(key || digest), which stands in for RSA-PSS/ECDSA (the real
 * algorithms are the host port's, tested by firmware/host/tests). */
enum { FZ_KEY_A = 0, FZ_KEY_B = 1, FZ_KEY_C = 2, FZ_KEY_COUNT = 3 };
#define FZ_RSA_KEY_LEN 776u
#define FZ_ECDSA_KEY_LEN 65u
const uint8_t *fz_key(int which, size_t *len);
/* SHA-256 of a key's bytes: the key digest eFuses and CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS hold. */
void fz_key_digest(int which, uint8_t out[32]);
/* Lowercase hex of the key digest (65 bytes with the NUL), for trusted_key_digests. */
void fz_key_digest_hex(int which, char out[65]);

/* Fills a 1216-byte Secure Boot v2 signature block by `which` over `digest` (fake signature). */
void fz_sign_block(int which, const uint8_t digest[32], uint8_t block[1216]);
/* Whether the fake signature of a block holds over `digest`: block version 2 (RSA layout) or
 * 3 (ECDSA layout); false for any other version. */
bool fz_fake_signature_holds(const uint8_t *block, const uint8_t digest[32]);

void fz_sha256(const void *data, size_t len, uint8_t out[32]);

static inline uint16_t fz_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t fz_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void fz_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void fz_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif
