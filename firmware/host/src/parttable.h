/* Partition table: partitions.csv -> ESP-IDF binary (gen_esp32part.py format) and back. */
#ifndef HOST_PARTTABLE_H
#define HOST_PARTTABLE_H

#include <stddef.h>
#include <stdint.h>

#define HOST_PTABLE_MAX 95 /* 0xC00 / 32 minus the MD5 entry */

typedef struct {
    char label[17];
    uint8_t type;
    uint8_t subtype;
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
} host_part_t;

typedef struct {
    host_part_t p[HOST_PTABLE_MAX];
    int count;
} host_ptable_t;

/* Parses ESP-IDF partitions.csv text (comments, blank lines, K/M suffixes, empty offsets). */
int host_ptable_parse_csv(const char *text, host_ptable_t *out, char *err, size_t errlen);
/* Writes the 0xC00-byte binary: entries, the 0xEBEB MD5 entry, 0xFF padding. */
void host_ptable_to_binary(const host_ptable_t *t, uint8_t out[0xC00]);
/* Verifies magic words and the MD5 entry the way the bootloader does. */
int host_ptable_from_binary(const uint8_t *bin, size_t len, host_ptable_t *out, char *err, size_t errlen);

const host_part_t *host_ptable_find(const host_ptable_t *t, uint8_t type, uint8_t subtype);
const host_part_t *host_ptable_find_label(const host_ptable_t *t, const char *label);
/* Number of ota_N app partitions (the bootloader's app_count). */
int host_ptable_ota_count(const host_ptable_t *t);
const host_part_t *host_ptable_ota(const host_ptable_t *t, int slot);
/* The "Usage" column of the bootloader's partition listing. */
const char *host_ptable_usage(const host_part_t *p);

/* The partitions.csv this build was configured with (firmware/partitions.csv). */
extern const char host_partitions_csv[];

#endif
