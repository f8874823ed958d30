#include "sbv2.h"

#include "io.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAGIC 0xE7u
#define VERSION_RSA 0x02u
#define VERSION_ECDSA 0x03u
#define KEY_AT 36u
#define RSA_BYTES 384u
#define RSA_KEY_LEN (RSA_BYTES + 4u + RSA_BYTES + 4u)
#define RSA_SIG_AT (KEY_AT + RSA_KEY_LEN)
#define ECDSA_KEY_LEN 65u
#define ECDSA_SIG_AT (KEY_AT + ECDSA_KEY_LEN)

static void prv_reverse(uint8_t *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = in[n - 1u - i];
    }
}

size_t host_sbv2_sector_offset(const uint8_t *data, size_t len)
{
    if (len < 2u * HOST_SBV2_SECTOR || len % HOST_SBV2_SECTOR != 0u) {
        return 0;
    }
    size_t at = len - HOST_SBV2_SECTOR;
    if (data[at] != MAGIC || (data[at + 1u] != VERSION_RSA && data[at + 1u] != VERSION_ECDSA)) {
        return 0;
    }
    return at;
}

static EVP_PKEY *prv_rsa_key(const uint8_t *key)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *n = BN_lebin2bn(key, (int)RSA_BYTES, NULL);
    BIGNUM *e = BN_lebin2bn(key + RSA_BYTES, 4, NULL);
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pkey = NULL;

    if (bld != NULL && n != NULL && e != NULL && ctx != NULL && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            pkey = NULL;
        }
    }
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *prv_ec_key(const uint8_t *key)
{
    uint8_t point[65];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;

    point[0] = 0x04; /* uncompressed: X then Y, big-endian */
    prv_reverse(&point[1], key + 1, 32);
    prv_reverse(&point[33], key + 33, 32);
    if (bld != NULL && ctx != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            pkey = NULL;
        }
    }
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* The block's signature over the SHA-256 `digest` of the signed data, with the block's own key
 * (espsecure signs the digest as a prehashed SHA-256 message, as the ROM verifies it). */
static bool prv_signature_holds(const uint8_t *block, const uint8_t digest[32])
{
    bool rsa = block[1] == VERSION_RSA;
    EVP_PKEY *pkey = rsa ? prv_rsa_key(block + KEY_AT) : prv_ec_key(block + KEY_AT);
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t sig[RSA_BYTES];
    uint8_t der[80];
    size_t sig_len = 0;
    const uint8_t *sig_ptr = sig;
    bool ok = false;

    if (pkey == NULL) {
        goto out;
    }
    if (rsa) {
        prv_reverse(sig, block + RSA_SIG_AT, RSA_BYTES);
        sig_len = RSA_BYTES;
    } else {
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_lebin2bn(block + ECDSA_SIG_AT, 32, NULL);
        BIGNUM *s = BN_lebin2bn(block + ECDSA_SIG_AT + 32, 32, NULL);
        uint8_t *p = der;
        int n;

        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            goto out;
        }
        n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || (size_t)n > sizeof(der)) {
            ECDSA_SIG_free(es);
            goto out;
        }
        sig_len = (size_t)i2d_ECDSA_SIG(es, &p);
        sig_ptr = der;
        ECDSA_SIG_free(es);
    }
    pctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (pctx == NULL || EVP_PKEY_verify_init(pctx) != 1 || EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1) {
        goto out;
    }
    if (rsa && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)) {
        goto out;
    }
    ok = EVP_PKEY_verify(pctx, sig_ptr, sig_len, digest, 32) == 1;
    /* On the chip: one public-key operation on the image digest computed once (below) */
    host_io_cpu_work(rsa ? HOST_CPU_RSA3072_VERIFY : HOST_CPU_ECDSA_P256_VERIFY, 1);
out:
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(pkey);
    return ok;
}

bool host_sbv2_verify_block(const uint8_t *block, const uint8_t digest[32])
{
    if (block[0] != MAGIC || (block[1] != VERSION_RSA && block[1] != VERSION_ECDSA)) {
        return false;
    }
    if (block[1] == VERSION_ECDSA && block[KEY_AT] != 2u) {
        return false; /* P-192: not a curve this firmware accepts */
    }
    return prv_signature_holds(block, digest);
}
