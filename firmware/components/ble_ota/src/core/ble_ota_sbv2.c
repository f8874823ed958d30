/*
 * The signature policy (ble_ota_sbv2.h): which Secure Boot v2 signature blocks make an image
 * acceptable, and why one is refused. Runs on the chip and on the virtual rig alike; the ports
 * only hash, verify one block with its own key, say which keys the platform trusts, and read
 * the slot back.
 */
#include "ble_ota_sbv2.h"

#include <string.h>

#include "ble_ota_priv.h"

#define MAX_PINNED 3u

static uint8_t s_pinned[MAX_PINNED][BLE_OTA_SHA256_LEN];
static size_t s_n_pinned;
static char s_why[160];

void ble_ota_sbv2_reset(void)
{
    memset(s_pinned, 0, sizeof(s_pinned));
    s_n_pinned = 0;
}

size_t ble_ota_sbv2_pinned_count(void)
{
    return s_n_pinned;
}

static int prv_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool prv_separator(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool ble_ota_sbv2_pin(const char *text)
{
    ble_ota_sbv2_reset();
    if (text == NULL) {
        return true;
    }
    while (*text != '\0') {
        if (prv_separator(*text)) {
            text++;
            continue;
        }
        if (s_n_pinned == MAX_PINNED) {
            ble_ota_sbv2_reset();
            return false;
        }
        for (size_t i = 0; i < BLE_OTA_SHA256_LEN; i++) {
            int hi = prv_hex_digit(text[0]);
            int lo = hi < 0 ? -1 : prv_hex_digit(text[1]);
            if (lo < 0) {
                ble_ota_sbv2_reset();
                return false;
            }
            s_pinned[s_n_pinned][i] = (uint8_t)(hi << 4 | lo);
            text += 2;
        }
        if (*text != '\0' && !prv_separator(*text)) {
            ble_ota_sbv2_reset();
            return false;
        }
        s_n_pinned++;
    }
    return true;
}

static bool prv_in(const uint8_t digest[BLE_OTA_SHA256_LEN], const uint8_t (*set)[BLE_OTA_SHA256_LEN], size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (memcmp(digest, set[k], BLE_OTA_SHA256_LEN) == 0) {
            return true;
        }
    }
    return false;
}

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool prv_is_block(const uint8_t *block)
{
    return block[0] == BLE_OTA_SBV2_MAGIC &&
           (block[1] == BLE_OTA_SBV2_VERSION_RSA || block[1] == BLE_OTA_SBV2_VERSION_ECDSA);
}

int ble_ota_sbv2_check_blocks(const uint8_t *blocks, size_t count, const uint8_t *image_digest,
                              uint8_t verified[BLE_OTA_SHA256_LEN], const char **why)
{
    const ble_ota_port_t *port = ble_ota_priv_port();
    const ble_ota_port_v2_t *v2 = ble_ota_priv_port_v2();
    ble_ota_trust_t trust;
    size_t seen = 0;
    size_t limit;
    bool trusted_seen = false;
    bool pinned_out = false;

    *why = "this device cannot check signatures (its port has no verify_block)";
    if (v2 == NULL || v2->trusted_keys == NULL || v2->sha256_buf == NULL || v2->verify_block == NULL ||
        v2->crc32 == NULL) {
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    memset(&trust, 0, sizeof(trust));
    if (v2->trusted_keys(port->ctx, &trust) != BLE_OTA_OK) {
        trust.count = 0;
    }
    if (trust.count > BLE_OTA_SIG_MAX_BLOCKS) {
        trust.count = BLE_OTA_SIG_MAX_BLOCKS;
    }
    limit = count < BLE_OTA_SIG_MAX_BLOCKS ? count : BLE_OTA_SIG_MAX_BLOCKS;
    if (trust.blocks_checked > 0u && trust.blocks_checked < limit) {
        limit = trust.blocks_checked;
    }
    *why = NULL;
    for (size_t i = 0; i < limit; i++) {
        const uint8_t *block = blocks + i * BLE_OTA_SIG_BLOCK_LEN;
        uint8_t key_digest[BLE_OTA_SHA256_LEN];
        size_t key_len;
        int rc;

        if (!prv_is_block(block)) {
            break; /* the rest of the sector is 0xFF */
        }
        seen++;
        if (block[1] == BLE_OTA_SBV2_VERSION_ECDSA && block[BLE_OTA_SBV2_KEY_AT] != BLE_OTA_SBV2_ECDSA_P256) {
            continue; /* ECDSA on another curve than P-256: no key this firmware takes */
        }
        key_len = block[1] == BLE_OTA_SBV2_VERSION_RSA ? BLE_OTA_SBV2_RSA_KEY_LEN : BLE_OTA_SBV2_ECDSA_KEY_LEN;
        if (v2->sha256_buf(port->ctx, block + BLE_OTA_SBV2_KEY_AT, key_len, key_digest) != BLE_OTA_OK) {
            *why = "hashing a signature block's key failed";
            return BLE_OTA_ERR_BAD_SIGNATURE;
        }
        if (!prv_in(key_digest, (const uint8_t(*)[BLE_OTA_SHA256_LEN])trust.digests, trust.count)) {
            continue;
        }
        if (s_n_pinned > 0u && !prv_in(key_digest, (const uint8_t(*)[BLE_OTA_SHA256_LEN])s_pinned, s_n_pinned)) {
            pinned_out = true;
            continue;
        }
        trusted_seen = true;
        if (prv_u32(block + BLE_OTA_SBV2_CRC_AT) != v2->crc32(port->ctx, 0u, block, BLE_OTA_SBV2_CRC_AT)) {
            (void)snprintf(s_why, sizeof(s_why), "signature block %u (a trusted key) is damaged: its CRC is wrong",
                           (unsigned)(i + 1u));
            *why = s_why;
            continue;
        }
        if (image_digest != NULL &&
            memcmp(block + BLE_OTA_SBV2_DIGEST_AT, image_digest, BLE_OTA_SHA256_LEN) != 0) {
            (void)snprintf(s_why, sizeof(s_why),
                           "signature block %u (a trusted key) names another image digest: the image changed after "
                           "it was signed",
                           (unsigned)(i + 1u));
            *why = s_why;
            continue;
        }
        rc = v2->verify_block(port->ctx, block, block + BLE_OTA_SBV2_DIGEST_AT);
        if (rc != BLE_OTA_OK) {
            (void)snprintf(s_why, sizeof(s_why),
                           rc == BLE_OTA_ERR_UNSUPPORTED
                               ? "signature block %u (a trusted key) uses a scheme this chip does not verify"
                               : "signature block %u (a trusted key) does not verify: the image changed after it "
                                 "was signed, or the signature is forged",
                           (unsigned)(i + 1u));
            *why = s_why;
            continue;
        }
        memcpy(verified, block + BLE_OTA_SBV2_DIGEST_AT, BLE_OTA_SHA256_LEN);
        return BLE_OTA_OK;
    }
    if (trusted_seen) {
        return BLE_OTA_ERR_BAD_SIGNATURE;
    }
    if (pinned_out) {
        *why = "no signature block is by a key in CONFIG_BLE_OTA_TRUSTED_KEY_DIGESTS";
    } else if (trust.count == 0u) {
        *why = "this device trusts no signing key (no Secure Boot key digest, and the running app is not signed)";
    } else {
        (void)snprintf(s_why, sizeof(s_why),
                       "none of the %u signature block(s) read is by a key this device trusts (%u trusted key "
                       "digest(s))",
                       (unsigned)seen, (unsigned)trust.count);
        *why = s_why;
    }
    return BLE_OTA_ERR_UNTRUSTED_KEY;
}

int ble_ota_sbv2_check_written_image(uint32_t image_len, uint8_t verified[BLE_OTA_SHA256_LEN], const char **why)
{
    const ble_ota_port_t *port = ble_ota_priv_port();
    const ble_ota_port_v2_t *v2 = ble_ota_priv_port_v2();
    /* The signature blocks at the end; before that, the read-back buffer of the image digest
     * (a few hundred reads per MiB, not thousands). */
    static uint8_t s_buf[BLE_OTA_SIG_MAX_BLOCKS * BLE_OTA_SIG_BLOCK_LEN];
    uint8_t head[2];
    uint8_t digest[BLE_OTA_SHA256_LEN];
    uint32_t at;

    if (v2 == NULL || v2->slot_read == NULL) {
        *why = "this device cannot check signatures (its port has no slot_read)";
        return BLE_OTA_ERR_UNSUPPORTED;
    }
    if (image_len < 2u * BLE_OTA_SBV2_SECTOR || image_len % BLE_OTA_SBV2_SECTOR != 0u) {
        *why = "the image is not signed: it does not end in a 4 KB Secure Boot v2 signature sector";
        return BLE_OTA_ERR_UNSIGNED;
    }
    at = image_len - BLE_OTA_SBV2_SECTOR;
    if (v2->slot_read(port->ctx, at, head, sizeof(head)) != BLE_OTA_OK) {
        *why = "reading the written image's signature sector failed";
        return BLE_OTA_ERR_FLASH;
    }
    if (!prv_is_block(head)) {
        *why = "the image is not signed: its last 4 KB sector holds no Secure Boot v2 signature block";
        return BLE_OTA_ERR_UNSIGNED;
    }
    /* The digest the signature must cover: the image and its 0xFF padding, as written. */
    if (port->sha256_start(port->ctx) != BLE_OTA_OK) {
        *why = "starting the image digest failed";
        return BLE_OTA_ERR_FLASH;
    }
    for (uint32_t off = 0; off < at; off += (uint32_t)sizeof(s_buf)) {
        size_t n = at - off < sizeof(s_buf) ? at - off : sizeof(s_buf);
        if (v2->slot_read(port->ctx, off, s_buf, n) != BLE_OTA_OK ||
            port->sha256_update(port->ctx, s_buf, n) != BLE_OTA_OK) {
            (void)port->sha256_finish(port->ctx, digest);
            *why = "reading the written image back failed";
            return BLE_OTA_ERR_FLASH;
        }
    }
    if (port->sha256_finish(port->ctx, digest) != BLE_OTA_OK) {
        *why = "finishing the image digest failed";
        return BLE_OTA_ERR_FLASH;
    }
    if (v2->slot_read(port->ctx, at, s_buf, sizeof(s_buf)) != BLE_OTA_OK) {
        *why = "reading the written image's signature sector failed";
        return BLE_OTA_ERR_FLASH;
    }
    return ble_ota_sbv2_check_blocks(s_buf, BLE_OTA_SIG_MAX_BLOCKS, digest, verified, why);
}

bool ble_ota_sbv2_available(void)
{
    const ble_ota_port_v2_t *v2 = ble_ota_priv_port_v2();

    return v2 != NULL && v2->trusted_keys != NULL && v2->sha256_buf != NULL && v2->verify_block != NULL &&
           v2->slot_read != NULL;
}

int ble_ota_sbv2_end_check(uint32_t image_len, const char **why)
{
    ble_ota_security_t sec;
    uint8_t verified[BLE_OTA_SHA256_LEN];
    char hex[2 * BLE_OTA_SHA256_LEN + 1];
    int rc;

    ble_ota_v2_security(&sec);
    *why = NULL;
    if (!sec.signed_only) {
        return BLE_OTA_OK;
    }
    rc = ble_ota_sbv2_check_written_image(image_len, verified, why);
    if (rc == BLE_OTA_ERR_UNSUPPORTED) {
        rc = BLE_OTA_ERR_UNSIGNED; /* signed only, and no way to check: nothing gets in */
    }
    if (rc != BLE_OTA_OK) {
        return rc;
    }
    ble_ota_priv_hex(verified, BLE_OTA_SHA256_LEN, hex);
    ble_ota_priv_log(BLE_OTA_LOG_INFO, "signature of the written image verified (image digest %s)", hex);
    return BLE_OTA_OK;
}
