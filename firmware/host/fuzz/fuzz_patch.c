/*
 * libFuzzer target: the delta-update patch applier (ble_ota_patch.c) over arbitrary patch
 * streams, bases and image sizes. README.md, "Patch target".
 *
 * Input: u16 base_size, u16 image_size, u8 scratch size (1..256 bytes for the base reads), u8
 * seed of the chunking, then the patch stream. The base is a fixed pattern of base_size bytes.
 * The patch is fed twice: whole, and in chunks of 1 to 64 bytes chosen by the seed (as inflated
 * output and DATA frames cut it), to two appliers.
 *
 * Invariants: the applier never reads outside [0, base_size) nor more than its scratch at once,
 * never emits past image_size, reports done only with exactly image_size bytes emitted, and the
 * chunking changes nothing: the same verdict (ok, refused, done), the same bytes emitted, in
 * the same order. A refusal always says why.
 */
#include <stdint.h>
#include <string.h>

#include "ble_ota_patch.h"
#include "fuzz_common.h"

#define MAX_SIZE 65535u

typedef struct {
    uint32_t base_size;
    uint32_t image_size;
    size_t scratch_len;
    uint8_t out[MAX_SIZE];
    uint32_t out_len;
} sink_t;

static uint8_t s_base[MAX_SIZE];
static uint8_t s_scratch[2][256];
static sink_t s_sink[2];

static int prv_read_base(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    sink_t *k = ctx;

    FZ_CHECK(len > 0u && len <= k->scratch_len, "base read of %zu bytes with a scratch of %zu", len, k->scratch_len);
    FZ_CHECK((uint64_t)offset + len <= k->base_size, "base read [%u, +%zu) outside the base of %u bytes",
             (unsigned)offset, len, (unsigned)k->base_size);
    memcpy(buf, &s_base[offset], len);
    return 0;
}

static bool prv_emit(void *ctx, const uint8_t *data, size_t len)
{
    sink_t *k = ctx;

    FZ_CHECK(len > 0u, "an empty emit");
    FZ_CHECK((uint64_t)k->out_len + len <= k->image_size, "emit past image_size: %u + %zu > %u",
             (unsigned)k->out_len, len, (unsigned)k->image_size);
    memcpy(&k->out[k->out_len], data, len);
    k->out_len += (uint32_t)len;
    return true;
}

static void prv_progress(void *ctx, uint32_t produced)
{
    sink_t *k = ctx;

    FZ_CHECK(produced == k->out_len && produced <= k->image_size, "progress at %u, emitted %u of %u",
             (unsigned)produced, (unsigned)k->out_len, (unsigned)k->image_size);
}

static int prv_run(int which, const uint8_t *patch, size_t len, uint8_t seed, bool *done)
{
    sink_t *k = &s_sink[which];
    ble_ota_patch_t p;
    ble_ota_patch_io_t io = {
        .ctx = k,
        .read_base = prv_read_base,
        .emit = prv_emit,
        .progress = prv_progress,
        .scratch = s_scratch[which],
        .scratch_len = k->scratch_len,
    };
    uint32_t x = seed * 2654435761u + 1u;
    int rc = BLE_OTA_PATCH_OK;

    ble_ota_patch_init(&p, k->base_size, k->image_size);
    k->out_len = 0u;
    while (len > 0u && rc == BLE_OTA_PATCH_OK) {
        size_t n = len;
        const char *why = NULL;

        if (which == 1) {
            x = x * 1103515245u + 12345u;
            n = 1u + (x >> 16) % 64u;
            n = n < len ? n : len;
        }
        rc = ble_ota_patch_feed(&p, patch, n, &io, &why);
        FZ_CHECK(rc == BLE_OTA_PATCH_OK || rc == BLE_OTA_PATCH_BAD, "feed returned %d with a base that reads", rc);
        FZ_CHECK((rc == BLE_OTA_PATCH_BAD) == (why != NULL), "a refusal without a reason, or a reason without one");
        FZ_CHECK(p.produced == k->out_len, "produced %u, emitted %u", (unsigned)p.produced, (unsigned)k->out_len);
        patch += n;
        len -= n;
    }
    *done = ble_ota_patch_done(&p);
    FZ_CHECK(!*done || k->out_len == k->image_size, "done with %u of %u bytes", (unsigned)k->out_len,
             (unsigned)k->image_size);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool done[2];
    int rc[2];

    if (size < 6u) {
        return 0;
    }
    if (s_base[1] == 0u) {
        for (uint32_t i = 0; i < MAX_SIZE; i++) {
            s_base[i] = (uint8_t)(i * 31u + (i >> 8) + 1u);
        }
    }
    for (int i = 0; i < 2; i++) {
        s_sink[i].base_size = (uint32_t)data[0] | ((uint32_t)data[1] << 8);
        s_sink[i].image_size = (uint32_t)data[2] | ((uint32_t)data[3] << 8);
        s_sink[i].scratch_len = 1u + data[4];
    }
    for (int i = 0; i < 2; i++) {
        rc[i] = prv_run(i, &data[6], size - 6u, data[5], &done[i]);
    }
    FZ_CHECK(rc[0] == rc[1] && done[0] == done[1], "the chunking changed the verdict: whole %d/%d, chunked %d/%d",
             rc[0], done[0], rc[1], done[1]);
    /* A refusal mid-ADD may come after different amounts of its bytes: compare what both emitted. */
    {
        uint32_t n = s_sink[0].out_len < s_sink[1].out_len ? s_sink[0].out_len : s_sink[1].out_len;
        FZ_CHECK(memcmp(s_sink[0].out, s_sink[1].out, n) == 0, "the chunking changed the bytes emitted");
        FZ_CHECK(rc[0] != BLE_OTA_PATCH_OK || s_sink[0].out_len == s_sink[1].out_len,
                 "the chunking changed how many bytes were emitted (%u, %u)", (unsigned)s_sink[0].out_len,
                 (unsigned)s_sink[1].out_len);
    }
    return 0;
}
