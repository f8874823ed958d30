#include "fuzz_common.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ets_secure_boot_sig_block_t offsets (IDF's esp_secure_boot.h). */
#define BLOCK_LEN 1216u
#define DIGEST_AT 4u
#define KEY_AT 36u
#define RSA_SIG_AT (KEY_AT + FZ_RSA_KEY_LEN)
#define ECDSA_SIG_AT (KEY_AT + FZ_ECDSA_KEY_LEN)
#define CRC_AT 1196u

void fz_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("\nble_ota fuzz: INVARIANT VIOLATED: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fflush(stderr);
    abort();
}

void fz_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;

    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        fz_fail("OpenSSL's SHA-256 failed");
    }
}

static uint8_t s_keys[FZ_KEY_COUNT][FZ_RSA_KEY_LEN];
static bool s_keys_made;

/* Fixed bytes, different per key (xorshift32): the fuzz corpus must stay valid across runs. */
static void prv_make_keys(void)
{
    for (int k = 0; k < FZ_KEY_COUNT; k++) {
        uint32_t x = 0x9E3779B9u * (uint32_t)(k + 1);
        for (size_t i = 0; i < FZ_RSA_KEY_LEN; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s_keys[k][i] = (uint8_t)x;
        }
    }
    s_keys[FZ_KEY_C][0] = 2u; /* curve id: P-256 */
    s_keys_made = true;
}

const uint8_t *fz_key(int which, size_t *len)
{
    if (!s_keys_made) {
        prv_make_keys();
    }
    *len = which == FZ_KEY_C ? FZ_ECDSA_KEY_LEN : FZ_RSA_KEY_LEN;
    return s_keys[which];
}

void fz_key_digest(int which, uint8_t out[32])
{
    size_t len;
    const uint8_t *key = fz_key(which, &len);

    fz_sha256(key, len, out);
}

void fz_key_digest_hex(int which, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];

    fz_key_digest(which, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 0xFu];
    }
    out[64] = '\0';
}

static void prv_fake_signature(const uint8_t *key, size_t key_len, const uint8_t digest[32], uint8_t out[32])
{
    uint8_t buf[FZ_RSA_KEY_LEN + 32];

    memcpy(buf, key, key_len);
    memcpy(buf + key_len, digest, 32);
    fz_sha256(buf, key_len + 32, out);
}

void fz_sign_block(int which, const uint8_t digest[32], uint8_t block[BLOCK_LEN])
{
    size_t key_len;
    const uint8_t *key = fz_key(which, &key_len);
    size_t sig_at = which == FZ_KEY_C ? ECDSA_SIG_AT : RSA_SIG_AT;

    memset(block, 0, BLOCK_LEN);
    block[0] = 0xE7u;
    block[1] = which == FZ_KEY_C ? 0x03u : 0x02u;
    memcpy(block + DIGEST_AT, digest, 32);
    memcpy(block + KEY_AT, key, key_len);
    prv_fake_signature(key, key_len, digest, block + sig_at);
    fz_put_u32(block + CRC_AT, (uint32_t)crc32(0u, block, CRC_AT));
}

bool fz_fake_signature_holds(const uint8_t *block, const uint8_t digest[32])
{
    uint8_t want[32];

    if (block[1] == 0x02u) {
        prv_fake_signature(block + KEY_AT, FZ_RSA_KEY_LEN, digest, want);
        return memcmp(block + RSA_SIG_AT, want, 32) == 0;
    }
    if (block[1] == 0x03u) {
        prv_fake_signature(block + KEY_AT, FZ_ECDSA_KEY_LEN, digest, want);
        return memcmp(block + ECDSA_SIG_AT, want, 32) == 0;
    }
    return false;
}
