/* What the core reads from the image it receives: the app description's secure_version and
 * version, and the order of two app versions. See ble_ota_priv.h. */
#include <string.h>

#include "ble_ota_priv.h"

/* esp_app_format.h: esp_image_header_t (24 bytes) and the first esp_image_segment_header_t
 * (8 bytes), then esp_app_desc_t: magic_word, secure_version, reserv1[2], version[32]. */
#define APP_DESC_AT 32u
#define APP_DESC_MAGIC 0xABCD5432u
#define SECURE_VERSION_AT (APP_DESC_AT + 4u)
#define VERSION_AT (APP_DESC_AT + 16u)

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bool ble_ota_priv_head_feed(ble_ota_head_t *head, uint32_t pos, const uint8_t *data, size_t len)
{
    if (head->complete || pos >= BLE_OTA_HEAD_LEN) {
        return false;
    }
    if (pos != head->have) {
        return false; /* bytes arrive in order; anything else is not ours to read */
    }
    size_t take = BLE_OTA_HEAD_LEN - head->have;
    if (take > len) {
        take = len;
    }
    memcpy(&head->bytes[head->have], data, take);
    head->have += (uint32_t)take;
    if (head->have < BLE_OTA_HEAD_LEN) {
        return false;
    }
    head->complete = true;
    head->has_desc = prv_u32(&head->bytes[APP_DESC_AT]) == APP_DESC_MAGIC;
    head->secure_version = head->has_desc ? prv_u32(&head->bytes[SECURE_VERSION_AT]) : 0u;
    memset(head->version, 0, sizeof(head->version));
    if (head->has_desc) {
        memcpy(head->version, &head->bytes[VERSION_AT], 32u);
    }
    return true;
}

/* Reads up to three dot-separated numbers; false if the text does not start with one. */
static bool prv_numbers(const char *s, size_t len, unsigned long out[3])
{
    size_t i = 0;
    int part = 0;

    out[0] = out[1] = out[2] = 0;
    if (i < len && (s[i] == 'v' || s[i] == 'V')) {
        i++;
    }
    if (i >= len || s[i] < '0' || s[i] > '9') {
        return false;
    }
    while (part < 3 && i < len && s[i] >= '0' && s[i] <= '9') {
        unsigned long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (v < 100000000ul) {
                v = v * 10u + (unsigned long)(s[i] - '0');
            }
            i++;
        }
        out[part++] = v;
        if (i + 1 < len && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
            i++;
        } else {
            break;
        }
    }
    return true;
}

bool ble_ota_version_compare(const char *a, size_t a_len, const char *b, size_t b_len, int *order)
{
    unsigned long va[3];
    unsigned long vb[3];

    a_len = strnlen(a, a_len);
    b_len = strnlen(b, b_len);
    if (!prv_numbers(a, a_len, va) || !prv_numbers(b, b_len, vb)) {
        return false;
    }
    *order = 0;
    for (int i = 0; i < 3 && *order == 0; i++) {
        *order = va[i] < vb[i] ? -1 : va[i] > vb[i] ? 1 : 0;
    }
    return true;
}

int ble_ota_priv_check_head(const ble_ota_head_t *head, const ble_ota_security_t *sec, const char *running_version,
                            bool downgrade_requested, const char **why)
{
    static char s_why[256]; /* the longest message below is 179 characters with two 32-character versions */
    int order = 0;

    if (!head->has_desc) {
        *why = "no esp_app_desc_t after the first segment header";
        return BLE_OTA_ERR_INVALID_IMAGE;
    }
    if (sec->anti_rollback && head->secure_version < sec->min_secure_version) {
        (void)snprintf(s_why, sizeof(s_why), "secure_version %lu is below the device's minimum %lu (anti-rollback)",
                       (unsigned long)head->secure_version, (unsigned long)sec->min_secure_version);
        *why = s_why;
        return BLE_OTA_ERR_DOWNGRADE;
    }
    if (ble_ota_version_compare(head->version, sizeof(head->version), running_version, 32u, &order) && order < 0 &&
        !(downgrade_requested && sec->allow_downgrade)) {
        (void)snprintf(s_why, sizeof(s_why), "app version %.32s is older than the running %.32s (%s)", head->version,
                       running_version,
                       !sec->allow_downgrade ? "this device takes no older version: CONFIG_BLE_OTA_ALLOW_DOWNGRADE is off"
                                             : "ask for it with --allow-downgrade");
        *why = s_why;
        return BLE_OTA_ERR_VERSION_DOWNGRADE;
    }
    return BLE_OTA_OK;
}
