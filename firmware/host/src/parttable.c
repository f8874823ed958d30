#include "parttable.h"

#include "esp_format.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void prv_trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) {
        i++;
    }
    memmove(s, s + i, n - i + 1);
}

static int prv_parse_num(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s) {
        return -1;
    }
    if (*end == 'K' || *end == 'k') {
        v *= 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        v *= 1024 * 1024;
        end++;
    }
    if (*end != '\0' || v > UINT32_MAX) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int prv_parse_type(const char *s, uint8_t *out)
{
    uint32_t v;
    if (strcmp(s, "app") == 0) {
        *out = PART_TYPE_APP;
    } else if (strcmp(s, "data") == 0) {
        *out = PART_TYPE_DATA;
    } else if (prv_parse_num(s, &v) == 0 && v <= 0xFE) {
        *out = (uint8_t)v;
    } else {
        return -1;
    }
    return 0;
}

/* Subtype names as gen_esp32part.py knows them. */
static int prv_parse_subtype(uint8_t type, const char *s, uint8_t *out)
{
    static const struct {
        uint8_t type;
        const char *name;
        uint8_t value;
    } names[] = {
        {PART_TYPE_APP, "factory", 0x00}, {PART_TYPE_APP, "test", 0x20},     {PART_TYPE_DATA, "ota", 0x00},
        {PART_TYPE_DATA, "phy", 0x01},    {PART_TYPE_DATA, "nvs", 0x02},     {PART_TYPE_DATA, "coredump", 0x03},
        {PART_TYPE_DATA, "nvs_keys", 0x04}, {PART_TYPE_DATA, "efuse", 0x05}, {PART_TYPE_DATA, "undefined", 0x06},
        {PART_TYPE_DATA, "esphttpd", 0x80}, {PART_TYPE_DATA, "fat", 0x81},   {PART_TYPE_DATA, "spiffs", 0x82},
        {PART_TYPE_DATA, "littlefs", 0x83},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].type == type && strcmp(names[i].name, s) == 0) {
            *out = names[i].value;
            return 0;
        }
    }
    if (type == PART_TYPE_APP && strncmp(s, "ota_", 4) == 0) {
        char *end;
        long n = strtol(s + 4, &end, 10);
        if (*end == '\0' && n >= 0 && n < 16) {
            *out = (uint8_t)(PART_SUBTYPE_OTA_FLAG + n);
            return 0;
        }
    }
    uint32_t v;
    if (prv_parse_num(s, &v) == 0 && v <= 0xFE) {
        *out = (uint8_t)v;
        return 0;
    }
    return -1;
}

int host_ptable_parse_csv(const char *text, host_ptable_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    /* gen_esp32part.py places the first auto-offset partition right after the table sector */
    uint32_t next_offset = ESP_PARTITION_TABLE_OFFSET + ESP_FLASH_SECTOR_SIZE;
    int lineno = 0;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        lineno++;
        if (n >= sizeof(line)) {
            snprintf(err, errlen, "partitions.csv line %d is too long", lineno);
            return -1;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (eol ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash) {
            *hash = '\0';
        }
        prv_trim(line);
        if (line[0] == '\0') {
            continue;
        }
        char *fields[6] = {0};
        int nf = 0;
        char *save = line;
        for (; nf < 6; nf++) {
            char *comma = strchr(save, ',');
            fields[nf] = save;
            if (!comma) {
                nf++;
                break;
            }
            *comma = '\0';
            save = comma + 1;
        }
        for (int i = 0; i < nf; i++) {
            prv_trim(fields[i]);
        }
        if (nf < 5) {
            snprintf(err, errlen, "partitions.csv line %d: expected name, type, subtype, offset, size", lineno);
            return -1;
        }
        if (out->count >= HOST_PTABLE_MAX) {
            snprintf(err, errlen, "partitions.csv has more than %d partitions", HOST_PTABLE_MAX);
            return -1;
        }
        host_part_t *part = &out->p[out->count];
        if (strlen(fields[0]) == 0 || strlen(fields[0]) > 16) {
            snprintf(err, errlen, "partitions.csv line %d: name '%s' must be 1..16 characters", lineno, fields[0]);
            return -1;
        }
        strcpy(part->label, fields[0]);
        if (prv_parse_type(fields[1], &part->type) != 0) {
            snprintf(err, errlen, "partitions.csv line %d: unknown type '%s'", lineno, fields[1]);
            return -1;
        }
        if (prv_parse_subtype(part->type, fields[2], &part->subtype) != 0) {
            snprintf(err, errlen, "partitions.csv line %d: unknown subtype '%s'", lineno, fields[2]);
            return -1;
        }
        uint32_t align = part->type == PART_TYPE_APP ? 0x10000u : 0x1000u;
        if (fields[3][0] == '\0') {
            part->offset = (next_offset + align - 1) & ~(align - 1);
        } else if (prv_parse_num(fields[3], &part->offset) != 0) {
            snprintf(err, errlen, "partitions.csv line %d: bad offset '%s'", lineno, fields[3]);
            return -1;
        }
        if (part->offset % align != 0) {
            snprintf(err, errlen, "partitions.csv line %d: offset 0x%x of '%s' is not aligned to 0x%x", lineno,
                     part->offset, part->label, align);
            return -1;
        }
        if (prv_parse_num(fields[4], &part->size) != 0 || part->size == 0) {
            snprintf(err, errlen, "partitions.csv line %d: bad size '%s'", lineno, fields[4]);
            return -1;
        }
        if (part->offset < next_offset) {
            snprintf(err, errlen, "partitions.csv line %d: '%s' at 0x%x overlaps the previous partition", lineno,
                     part->label, part->offset);
            return -1;
        }
        if (nf >= 6 && strstr(fields[5], "encrypted")) {
            part->flags |= 1u;
        }
        if (nf >= 6 && strstr(fields[5], "readonly")) {
            part->flags |= 2u;
        }
        next_offset = part->offset + part->size;
        out->count++;
    }
    if (out->count == 0) {
        snprintf(err, errlen, "partitions.csv has no partitions");
        return -1;
    }
    return 0;
}

static void prv_md5(const uint8_t *data, size_t len, uint8_t out[16])
{
    unsigned int outlen = 16;
    EVP_Digest(data, len, out, &outlen, EVP_md5(), NULL);
}

void host_ptable_to_binary(const host_ptable_t *t, uint8_t out[0xC00])
{
    memset(out, 0xFF, ESP_PARTITION_TABLE_MAX_LEN);
    size_t pos = 0;
    for (int i = 0; i < t->count; i++) {
        esp_partition_info_t e;
        memset(&e, 0, sizeof(e));
        e.magic = ESP_PARTITION_MAGIC;
        e.type = t->p[i].type;
        e.subtype = t->p[i].subtype;
        e.offset = t->p[i].offset;
        e.size = t->p[i].size;
        memcpy(e.label, t->p[i].label, strlen(t->p[i].label));
        e.flags = t->p[i].flags;
        memcpy(out + pos, &e, sizeof(e));
        pos += sizeof(e);
    }
    uint8_t md5[16];
    prv_md5(out, pos, md5);
    out[pos] = 0xEB;
    out[pos + 1] = 0xEB;
    memcpy(out + pos + ESP_PARTITION_MD5_OFFSET, md5, 16);
}

int host_ptable_from_binary(const uint8_t *bin, size_t len, host_ptable_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len < ESP_PARTITION_TABLE_MAX_LEN) {
        snprintf(err, errlen, "partition table needs 0x%x bytes, got 0x%zx", ESP_PARTITION_TABLE_MAX_LEN, len);
        return -1;
    }
    int md5_found = 0;
    for (size_t pos = 0; pos + sizeof(esp_partition_info_t) <= ESP_PARTITION_TABLE_MAX_LEN;
         pos += sizeof(esp_partition_info_t)) {
        esp_partition_info_t e;
        memcpy(&e, bin + pos, sizeof(e));
        if (e.magic == ESP_PARTITION_MAGIC) {
            if (out->count >= HOST_PTABLE_MAX) {
                snprintf(err, errlen, "partition table has too many entries");
                return -1;
            }
            host_part_t *p = &out->p[out->count++];
            memcpy(p->label, e.label, 16);
            p->label[16] = '\0';
            p->type = e.type;
            p->subtype = e.subtype;
            p->offset = e.offset;
            p->size = e.size;
            p->flags = e.flags;
            continue;
        }
        if (e.magic == ESP_PARTITION_MAGIC_MD5) {
            uint8_t md5[16];
            prv_md5(bin, pos, md5);
            if (memcmp(md5, bin + pos + ESP_PARTITION_MD5_OFFSET, 16) != 0) {
                snprintf(err, errlen, "partition table MD5 mismatch: the table at 0x%x is corrupt (reflash it)",
                         ESP_PARTITION_TABLE_OFFSET);
                return -1;
            }
            md5_found = 1;
            break;
        }
        if (e.magic == 0xFFFF) {
            break;
        }
        snprintf(err, errlen, "partition table entry %zu has bad magic 0x%04x (expected 0x50AA)",
                 pos / sizeof(esp_partition_info_t), e.magic);
        return -1;
    }
    (void)md5_found;
    if (out->count == 0) {
        snprintf(err, errlen, "no partition table at 0x%x (flash is blank there)", ESP_PARTITION_TABLE_OFFSET);
        return -1;
    }
    return 0;
}

const host_part_t *host_ptable_find(const host_ptable_t *t, uint8_t type, uint8_t subtype)
{
    for (int i = 0; i < t->count; i++) {
        if (t->p[i].type == type && t->p[i].subtype == subtype) {
            return &t->p[i];
        }
    }
    return NULL;
}

const host_part_t *host_ptable_find_label(const host_ptable_t *t, const char *label)
{
    for (int i = 0; i < t->count; i++) {
        if (strcmp(t->p[i].label, label) == 0) {
            return &t->p[i];
        }
    }
    return NULL;
}

int host_ptable_ota_count(const host_ptable_t *t)
{
    int n = 0;
    while (n < 16 && host_ptable_find(t, PART_TYPE_APP, (uint8_t)(PART_SUBTYPE_OTA_FLAG + n)) != NULL) {
        n++;
    }
    return n;
}

const host_part_t *host_ptable_ota(const host_ptable_t *t, int slot)
{
    if (slot < 0 || slot >= 16) {
        return NULL;
    }
    return host_ptable_find(t, PART_TYPE_APP, (uint8_t)(PART_SUBTYPE_OTA_FLAG + slot));
}

const char *host_ptable_usage(const host_part_t *p)
{
    if (p->type == PART_TYPE_APP) {
        if (p->subtype == PART_SUBTYPE_FACTORY) {
            return "factory app";
        }
        if (p->subtype == PART_SUBTYPE_TEST) {
            return "test app";
        }
        if ((p->subtype & ~PART_SUBTYPE_OTA_MASK) == PART_SUBTYPE_OTA_FLAG) {
            return "OTA app";
        }
        return "Unknown app";
    }
    if (p->type == PART_TYPE_DATA) {
        switch (p->subtype) {
        case PART_SUBTYPE_DATA_OTA:
            return "OTA data";
        case PART_SUBTYPE_DATA_RF:
            return "RF data";
        case PART_SUBTYPE_DATA_WIFI:
            return "WiFi data";
        case PART_SUBTYPE_DATA_NVS_KEYS:
            return "NVS keys";
        case PART_SUBTYPE_DATA_EFUSE_EM:
            return "efuse";
        default:
            return "Unknown data";
        }
    }
    return "unknown";
}
