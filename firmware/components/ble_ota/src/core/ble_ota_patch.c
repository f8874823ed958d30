/*
 * The delta-update patch applier (ble_ota_patch.h; the format is docs/protocol-v2.md's).
 * Every bound is checked where an op's numbers are complete, before any byte of it is read or
 * emitted: a COPY or DIFF inside the base, every op within what is left of image_size, no op
 * after END, END only once the image is whole.
 */
#include "ble_ota_patch.h"

enum {
    ST_OP = 0,    /* next byte is an op */
    ST_FROM,      /* COPY's or DIFF's base offset (varint) */
    ST_LEN,       /* an op's length (varint) */
    ST_ADD_DATA,  /* ADD's literal bytes */
    ST_DIFF_DATA, /* DIFF's bytes, each added to the base's */
    ST_DONE,      /* END read */
};

void ble_ota_patch_init(ble_ota_patch_t *p, uint32_t base_size, uint32_t image_size)
{
    *p = (ble_ota_patch_t){ 0 };
    p->state = ST_OP;
    p->base_size = base_size;
    p->image_size = image_size;
}

bool ble_ota_patch_done(const ble_ota_patch_t *p)
{
    return p->state == ST_DONE;
}

/* One byte of a varint. Returns 1 when the value is complete, 0 for more, -1 if it is not a u32. */
static int prv_varint(ble_ota_patch_t *p, uint8_t b)
{
    uint32_t bits = b & 0x7Fu;
    uint32_t shift = 7u * p->varint_len;

    if (p->varint_len == BLE_OTA_PATCH_VARINT_MAX - 1u && bits > 0x0Fu) {
        return -1; /* the fifth byte carries bits 28-31 only */
    }
    p->value |= bits << shift;
    p->varint_len++;
    if ((b & 0x80u) == 0u) {
        return 1;
    }
    return p->varint_len < BLE_OTA_PATCH_VARINT_MAX ? 0 : -1;
}

static int prv_copy(ble_ota_patch_t *p, uint32_t len, const ble_ota_patch_io_t *io)
{
    uint32_t from = p->copy_from;

    while (len > 0u) {
        uint32_t n = len < io->scratch_len ? len : (uint32_t)io->scratch_len;

        if (io->read_base(io->ctx, from, io->scratch, n) != 0) {
            return BLE_OTA_PATCH_READ;
        }
        if (!io->emit(io->ctx, io->scratch, n)) {
            return BLE_OTA_PATCH_EMIT;
        }
        p->produced += n;
        from += n;
        len -= n;
        if (io->progress != NULL) {
            io->progress(io->ctx, p->produced);
        }
    }
    return BLE_OTA_PATCH_OK;
}

static int prv_bad(const char **why, const char *what)
{
    *why = what;
    return BLE_OTA_PATCH_BAD;
}

/* DIFF's bytes: each added (mod 256) to the base byte at the same place, a scratch-full at a time. */
static int prv_diff(ble_ota_patch_t *p, const uint8_t *in, uint32_t n, const ble_ota_patch_io_t *io)
{
    if (io->read_base(io->ctx, p->copy_from, io->scratch, n) != 0) {
        return BLE_OTA_PATCH_READ;
    }
    for (uint32_t i = 0; i < n; i++) {
        io->scratch[i] = (uint8_t)(io->scratch[i] + in[i]);
    }
    if (!io->emit(io->ctx, io->scratch, n)) {
        return BLE_OTA_PATCH_EMIT;
    }
    p->produced += n;
    p->copy_from += n;
    p->add_left -= n;
    if (p->add_left == 0u) {
        p->state = ST_OP;
    }
    return BLE_OTA_PATCH_OK;
}

int ble_ota_patch_feed(ble_ota_patch_t *p, const uint8_t *in, size_t len, const ble_ota_patch_io_t *io,
                       const char **why)
{
    *why = NULL;
    while (len > 0u) {
        if (p->state == ST_DIFF_DATA) {
            uint32_t n = len < p->add_left ? (uint32_t)len : p->add_left;
            int rc;

            n = n < io->scratch_len ? n : (uint32_t)io->scratch_len;
            rc = prv_diff(p, in, n, io);
            if (rc != BLE_OTA_PATCH_OK) {
                return rc;
            }
            in += n;
            len -= n;
            continue;
        }
        if (p->state == ST_ADD_DATA) {
            uint32_t n = len < p->add_left ? (uint32_t)len : p->add_left;

            if (!io->emit(io->ctx, in, n)) {
                return BLE_OTA_PATCH_EMIT;
            }
            p->produced += n;
            p->add_left -= n;
            in += n;
            len -= n;
            if (p->add_left == 0u) {
                p->state = ST_OP;
            }
            continue;
        }
        uint8_t b = *in++;
        len--;
        switch (p->state) {
        case ST_OP:
            p->value = 0u;
            p->varint_len = 0u;
            p->op = b;
            if (b == BLE_OTA_PATCH_OP_END) {
                if (p->produced != p->image_size) {
                    return prv_bad(why, "the patch ends before the image is whole (fewer bytes than BEGIN's "
                                        "image_size)");
                }
                p->state = ST_DONE;
            } else if (b == BLE_OTA_PATCH_OP_COPY || b == BLE_OTA_PATCH_OP_DIFF) {
                p->state = ST_FROM;
            } else if (b == BLE_OTA_PATCH_OP_ADD) {
                p->state = ST_LEN;
            } else {
                return prv_bad(why, "unknown patch op (END 0x00, COPY 0x01, ADD 0x02, DIFF 0x03)");
            }
            break;
        case ST_FROM:
        case ST_LEN: {
            int rc = prv_varint(p, b);
            uint32_t v = p->value;

            if (rc < 0) {
                return prv_bad(why, "a patch number is not a 32-bit varint");
            }
            if (rc == 0) {
                break;
            }
            p->value = 0u;
            p->varint_len = 0u;
            if (p->state == ST_FROM) {
                p->copy_from = v;
                p->state = ST_LEN;
                break;
            }
            if (v == 0u) {
                return prv_bad(why, "a patch op of length 0");
            }
            if (v > p->image_size - p->produced) {
                return prv_bad(why, "the patch writes past BEGIN's image_size");
            }
            if (p->op == BLE_OTA_PATCH_OP_ADD) {
                p->add_left = v;
                p->state = ST_ADD_DATA;
                break;
            }
            if (p->copy_from > p->base_size || v > p->base_size - p->copy_from) {
                return prv_bad(why, "the patch copies from outside the running image (its base)");
            }
            if (p->op == BLE_OTA_PATCH_OP_DIFF) {
                p->add_left = v;
                p->state = ST_DIFF_DATA;
                break;
            }
            p->state = ST_OP;
            rc = prv_copy(p, v, io);
            if (rc != BLE_OTA_PATCH_OK) {
                return rc;
            }
            break;
        }
        default: /* ST_DONE */
            return prv_bad(why, "bytes after the patch's END");
        }
    }
    return BLE_OTA_PATCH_OK;
}
