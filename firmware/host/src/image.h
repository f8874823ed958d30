/*
 * ESP app images: building them (header, segments, checksum byte, appended SHA-256,
 * esp_app_desc_t) and verifying them on flash the way esp_image_verify() does.
 *
 * A host app image has one DROM segment: esp_app_desc_t, then a host payload header,
 * then the Linux executable of the app. The bootloader emulation execs that executable.
 */
#ifndef HOST_IMAGE_H
#define HOST_IMAGE_H

#include "chip.h"
#include "esp_format.h"
#include "flash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_PAYLOAD_MAGIC "ESPHOSTAPPv1"

/* Follows esp_app_desc_t in segment 0 of a host app image. */
typedef struct __attribute__((packed)) {
    char magic[12]; /* HOST_PAYLOAD_MAGIC, not NUL-terminated */
    uint32_t exec_len;
} host_payload_hdr_t;
_Static_assert(sizeof(host_payload_hdr_t) == 16, "payload header keeps the executable word-aligned");

typedef struct {
    uint32_t load_addr;
    const uint8_t *data;
    size_t len; /* padded with zeros to a multiple of 4 */
} host_image_segment_t;

typedef struct {
    uint16_t chip_id;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    uint32_t entry_addr;
    int segment_count;
    host_image_segment_t segments[ESP_IMAGE_MAX_SEGMENTS];
} host_image_layout_t;

/* Assembles header, segments, padding + checksum byte and SHA-256. Caller frees *out. */
int host_image_assemble(const host_image_layout_t *layout, uint8_t **out, size_t *out_len, char *err, size_t errlen);

typedef struct {
    const host_chip_t *chip;
    const char *version;
    const char *project_name;
    const char *idf_ver;
    const char *date; /* "Nov 24 2026", __DATE__ format */
    const char *time; /* "21:30:00" */
    uint32_t secure_version;
    uint8_t elf_sha256[32];
    const uint8_t *exec;
    size_t exec_len;
} host_app_image_params_t;

int host_app_image_build(const host_app_image_params_t *p, uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* The 2nd stage bootloader image written at the chip's bootloader offset by --create:
 * one segment with esp_bootloader_desc_t (how the device remembers which chip it is). */
int host_bootloader_image_build(const host_chip_t *chip, const char *idf_ver, const char *date_time, uint8_t **out,
                                size_t *out_len, char *err, size_t errlen);

typedef struct {
    esp_image_header_t header;
    int segment_count;
    esp_image_segment_header_t segments[ESP_IMAGE_MAX_SEGMENTS];
    uint32_t segment_data_addr[ESP_IMAGE_MAX_SEGMENTS]; /* absolute flash addresses */
    uint32_t image_len;                                  /* everything, SHA-256 included */
    uint8_t checksum;
    uint8_t digest[32];
    bool has_app_desc;
    esp_app_desc_t app_desc;
} host_image_info_t;

enum {
    HOST_IMAGE_VERIFY_SILENT = 1,    /* no segment lines, no error lines (ESP_IMAGE_VERIFY_SILENT) */
    HOST_IMAGE_VERIFY_BOOTLOADER = 2 /* bootloader image: no app descriptor in segment 0 */
};

/*
 * Verifies the image at part_offset the way esp_image_verify(ESP_IMAGE_VERIFY) does:
 * magic, chip id and revision, segment count and lengths, mapping alignment, checksum
 * byte, appended SHA-256, and that it fits the partition. Logs like esp_image (tag
 * "esp_image") unless SILENT. chip may be NULL to skip the chip checks.
 */
int host_image_verify(host_flash_t *f, uint32_t part_offset, uint32_t part_size, const host_chip_t *chip, int flags,
                      host_image_info_t *info, char *err, size_t errlen);

/* Same checks on an image in memory (tools, tests). */
int host_image_verify_buffer(const uint8_t *img, size_t len, uint32_t flash_offset, const host_chip_t *chip, int flags,
                             host_image_info_t *info, char *err, size_t errlen);

/* Locates the host executable in a verified app image; *exec points into flash memory. */
int host_image_find_exec(const host_flash_t *f, const host_image_info_t *info, const uint8_t **exec, size_t *len,
                         char *err, size_t errlen);

/* SHA-256 through OpenSSL libcrypto. */
void host_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
