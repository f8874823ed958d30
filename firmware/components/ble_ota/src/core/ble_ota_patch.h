/*
 * The delta-update patch applier (docs/protocol-v2.md, "Delta updates"): a byte-wise state machine
 * over the (inflated) patch stream of ops COPY(base offset, length) / ADD(length, bytes) /
 * DIFF(base offset, length, bytes added to the base's) / END, that reads the running image through the port and hands the image it rebuilds to the same
 * writer path as a full image. Its whole state is this struct (no allocation, no buffer of its
 * own beyond the caller's scratch for base reads), so a session held across a lost link resumes
 * the applier exactly where it stopped, as it does the inflater.
 */
#ifndef BLE_OTA_PATCH_H
#define BLE_OTA_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLE_OTA_PATCH_OP_END 0x00u
#define BLE_OTA_PATCH_OP_COPY 0x01u
#define BLE_OTA_PATCH_OP_ADD 0x02u
#define BLE_OTA_PATCH_OP_DIFF 0x03u
/* A u32 in unsigned LEB128 takes at most 5 bytes. */
#define BLE_OTA_PATCH_VARINT_MAX 5u

typedef enum {
    BLE_OTA_PATCH_OK = 0,
    BLE_OTA_PATCH_BAD = -1,  /* the patch is malformed or reaches outside its bounds: BAD_PATCH */
    BLE_OTA_PATCH_READ = -2, /* reading the base failed: FLASH_ERROR */
    BLE_OTA_PATCH_EMIT = -3, /* the writer refused the bytes (it failed the session itself) */
} ble_ota_patch_rc_t;

typedef struct {
    uint8_t state;
    uint8_t op;         /* the op whose operands are being read */
    uint8_t varint_len; /* bytes of the varint being read */
    uint32_t value;     /* the varint being read */
    uint32_t copy_from; /* COPY, DIFF: base offset, read before the length; DIFF: where it is now */
    uint32_t add_left;  /* ADD, DIFF: literal or difference bytes still to come */
    uint32_t produced;  /* image bytes emitted */
    uint32_t base_size;
    uint32_t image_size;
} ble_ota_patch_t;

typedef struct {
    void *ctx;
    /* Reads base bytes [offset, offset + len), always inside [0, base_size). */
    int (*read_base)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);
    /* Takes the next len image bytes, never past image_size in total. False: stop. */
    bool (*emit)(void *ctx, const uint8_t *data, size_t len);
    /* Optional: called after each piece of a COPY with the image bytes produced so far. One byte
     * of patch can copy the whole image: the caller tells its client the device is still busy. */
    void (*progress)(void *ctx, uint32_t produced);
    uint8_t *scratch; /* for base reads: a COPY or DIFF goes through it in pieces of scratch_len */
    size_t scratch_len;
} ble_ota_patch_io_t;

void ble_ota_patch_init(ble_ota_patch_t *p, uint32_t base_size, uint32_t image_size);
/* Consumes len patch bytes. On BLE_OTA_PATCH_BAD, *why says what was wrong (one sentence). */
int ble_ota_patch_feed(ble_ota_patch_t *p, const uint8_t *in, size_t len, const ble_ota_patch_io_t *io,
                       const char **why);
/* True once END was read (the image is then whole: END before image_size is refused). */
bool ble_ota_patch_done(const ble_ota_patch_t *p);

#endif /* BLE_OTA_PATCH_H */
