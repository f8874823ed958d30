#include "image.h"

#include "io.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MMU_PAGE 0x10000u
#define HOST_MAX_FLASH_ADDR 0x1000000u /* ESP_IMAGE_MAX_FLASH_ADDR_SIZE: 16 MB */

void host_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static size_t prv_align4(size_t n)
{
    return (n + 3u) & ~(size_t)3u;
}

int host_image_assemble(const host_image_layout_t *layout, uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    if (layout->segment_count < 1 || layout->segment_count > (int)ESP_IMAGE_MAX_SEGMENTS) {
        snprintf(err, errlen, "an image needs 1..16 segments, got %d", layout->segment_count);
        return -1;
    }
    size_t total = sizeof(esp_image_header_t);
    for (int i = 0; i < layout->segment_count; i++) {
        total += sizeof(esp_image_segment_header_t) + prv_align4(layout->segments[i].len);
    }
    size_t unpadded = total;
    size_t padded = (unpadded + 1 + 15) & ~(size_t)15; /* checksum byte ends a 16-byte block */
    size_t len = padded + ESP_IMAGE_HASH_LEN;
    uint8_t *img = calloc(1, len);
    if (img == NULL) {
        snprintf(err, errlen, "out of memory for a %zu-byte image", len);
        return -1;
    }
    esp_image_header_t h;
    memset(&h, 0, sizeof(h));
    h.magic = ESP_IMAGE_HEADER_MAGIC;
    h.segment_count = (uint8_t)layout->segment_count;
    h.spi_mode = ESP_IMAGE_SPI_MODE_DIO;
    h.spi_speed = ESP_IMAGE_SPI_SPEED_DIV_2;
    h.spi_size = ESP_IMAGE_FLASH_SIZE_4MB;
    h.entry_addr = layout->entry_addr;
    h.wp_pin = ESP_IMAGE_WP_PIN_DISABLED;
    h.chip_id = layout->chip_id;
    h.min_chip_rev = (uint8_t)(layout->min_chip_rev_full / 100);
    h.min_chip_rev_full = layout->min_chip_rev_full;
    h.max_chip_rev_full = layout->max_chip_rev_full;
    h.hash_appended = 1;
    memcpy(img, &h, sizeof(h));
    size_t pos = sizeof(h);
    uint8_t checksum = ESP_IMAGE_CHECKSUM_SEED;
    for (int i = 0; i < layout->segment_count; i++) {
        const host_image_segment_t *s = &layout->segments[i];
        esp_image_segment_header_t sh = {s->load_addr, (uint32_t)prv_align4(s->len)};
        memcpy(img + pos, &sh, sizeof(sh));
        pos += sizeof(sh);
        memcpy(img + pos, s->data, s->len);
        for (size_t k = 0; k < sh.data_len; k++) {
            checksum ^= img[pos + k];
        }
        pos += sh.data_len;
    }
    img[padded - 1] = checksum;
    host_sha256(img, padded, img + padded);
    *out = img;
    *out_len = len;
    return 0;
}

static void prv_copy_str(char *dst, size_t cap, const char *src)
{
    memset(dst, 0, cap);
    if (src) {
        size_t n = strlen(src);
        memcpy(dst, src, n < cap - 1 ? n : cap - 1);
    }
}

int host_app_image_build(const host_app_image_params_t *p, uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    if (p->chip == NULL || p->exec == NULL || p->exec_len == 0) {
        snprintf(err, errlen, "an app image needs a chip and a non-empty executable");
        return -1;
    }
    if (p->version && strlen(p->version) > 31) {
        snprintf(err, errlen, "app version '%s' is longer than the 31 characters esp_app_desc_t holds", p->version);
        return -1;
    }
    if (p->project_name && strlen(p->project_name) > 31) {
        snprintf(err, errlen, "project name '%s' is longer than 31 characters", p->project_name);
        return -1;
    }
    esp_app_desc_t d;
    memset(&d, 0, sizeof(d));
    d.magic_word = ESP_APP_DESC_MAGIC_WORD;
    d.secure_version = p->secure_version;
    prv_copy_str(d.version, sizeof(d.version), p->version);
    prv_copy_str(d.project_name, sizeof(d.project_name), p->project_name);
    prv_copy_str(d.time, sizeof(d.time), p->time);
    prv_copy_str(d.date, sizeof(d.date), p->date);
    prv_copy_str(d.idf_ver, sizeof(d.idf_ver), p->idf_ver);
    memcpy(d.app_elf_sha256, p->elf_sha256, 32);
    d.max_efuse_blk_rev_full = p->chip->chip_id == 0 ? 0 : 99;
    d.mmu_page_size = 16; /* log2(64 KB) */
    d.spi_flash_mode = ESP_IMAGE_SPI_MODE_DIO;

    size_t seg_len = sizeof(d) + sizeof(host_payload_hdr_t) + p->exec_len;
    if (seg_len > p->chip->drom_size) {
        snprintf(err, errlen, "the executable (%zu bytes) does not fit the %s DROM window", p->exec_len,
                 p->chip->model);
        return -1;
    }
    uint8_t *seg = calloc(1, prv_align4(seg_len));
    if (seg == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    host_payload_hdr_t ph;
    memcpy(ph.magic, HOST_PAYLOAD_MAGIC, sizeof(ph.magic));
    ph.exec_len = (uint32_t)p->exec_len;
    memcpy(seg, &d, sizeof(d));
    memcpy(seg + sizeof(d), &ph, sizeof(ph));
    memcpy(seg + sizeof(d) + sizeof(ph), p->exec, p->exec_len);

    host_image_layout_t l;
    memset(&l, 0, sizeof(l));
    l.chip_id = p->chip->chip_id;
    l.min_chip_rev_full = 0;
    l.max_chip_rev_full = p->chip->max_chip_rev_full;
    /* Segment data starts 0x20 into the partition; partitions are 64 KB aligned, so this
     * keeps flash offset and mapped address congruent modulo the MMU page as required. */
    uint32_t vaddr = p->chip->drom_base + (uint32_t)(sizeof(esp_image_header_t) + sizeof(esp_image_segment_header_t));
    l.entry_addr = vaddr + (uint32_t)(sizeof(d) + sizeof(ph)); /* where the executable starts */
    l.segment_count = 1;
    l.segments[0].load_addr = vaddr;
    l.segments[0].data = seg;
    l.segments[0].len = seg_len;
    int rc = host_image_assemble(&l, out, out_len, err, errlen);
    free(seg);
    return rc;
}

int host_bootloader_image_build(const host_chip_t *chip, const char *idf_ver, const char *date_time, uint8_t **out,
                                size_t *out_len, char *err, size_t errlen)
{
    esp_bootloader_desc_t d;
    memset(&d, 0, sizeof(d));
    d.magic_byte = ESP_BOOTLOADER_DESC_MAGIC_BYTE;
    d.version = 1;
    prv_copy_str(d.idf_ver, sizeof(d.idf_ver), idf_ver);
    prv_copy_str(d.date_time, sizeof(d.date_time), date_time);
    host_image_layout_t l;
    memset(&l, 0, sizeof(l));
    l.chip_id = chip->chip_id;
    l.max_chip_rev_full = chip->max_chip_rev_full;
    l.entry_addr = chip->bl_load_addr;
    l.segment_count = 1;
    l.segments[0].load_addr = chip->bl_load_addr;
    l.segments[0].data = (const uint8_t *)&d;
    l.segments[0].len = sizeof(d);
    return host_image_assemble(&l, out, out_len, err, errlen);
}

/* ---- verification ---- */

typedef struct {
    host_flash_t *flash;      /* read through the flash (counted as reads) ... */
    const uint8_t *buf;       /* ... or from memory */
    size_t buf_len;
    uint32_t base;            /* flash address of the image start */
} prv_src_t;

static int prv_read(prv_src_t *s, uint32_t addr, void *dst, size_t len)
{
    if (s->flash) {
        return host_flash_read(s->flash, addr, dst, len);
    }
    if (addr < s->base || (uint64_t)(addr - s->base) + len > s->buf_len) {
        return -1;
    }
    memcpy(dst, s->buf + (addr - s->base), len);
    return 0;
}

static const uint8_t *prv_view(prv_src_t *s, uint32_t addr, size_t len)
{
    if (s->flash) {
        return host_flash_view(s->flash, addr, len);
    }
    if (addr < s->base || (uint64_t)(addr - s->base) + len > s->buf_len) {
        return NULL;
    }
    return s->buf + (addr - s->base);
}

__attribute__((format(printf, 5, 6))) static int prv_fail(int flags, const char *tag, char *err, size_t errlen,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (!(flags & HOST_IMAGE_VERIFY_SILENT)) {
        host_log('E', tag, "%s", err);
    }
    return -1;
}

static bool prv_should_map(const host_chip_t *chip, uint32_t addr)
{
    if (chip == NULL) {
        return false;
    }
    return addr >= chip->drom_base && addr < chip->drom_base + chip->drom_size;
}

static int prv_verify(prv_src_t *src, uint32_t part_offset, uint32_t part_size, const host_chip_t *chip, int flags,
                      host_image_info_t *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    if (part_size > HOST_MAX_FLASH_ADDR) {
        return prv_fail(flags, "esp_image", err, errlen, "partition size 0x%x invalid, larger than 16MB", part_size);
    }
    esp_image_header_t *h = &info->header;
    if (prv_read(src, part_offset, h, sizeof(*h)) != 0) {
        return prv_fail(flags, "esp_image", err, errlen, "bootloader_flash_read failed at 0x%08x", part_offset);
    }
    if (h->magic != ESP_IMAGE_HEADER_MAGIC) {
        return prv_fail(flags, "esp_image", err, errlen, "image at 0x%x has invalid magic byte (nothing flashed here?)",
                        part_offset);
    }
    if (chip != NULL) {
        if (h->chip_id != chip->chip_id) {
            /* logged whatever the silent flag, as the bootloader does */
            return prv_fail(flags & ~HOST_IMAGE_VERIFY_SILENT, "boot_comm", err, errlen,
                            "mismatch chip ID, expected %d, found %d", chip->chip_id, h->chip_id);
        }
        unsigned rev = chip->chip_rev_full;
        if (rev < h->min_chip_rev_full) {
            return prv_fail(flags & ~HOST_IMAGE_VERIFY_SILENT, "boot_comm", err, errlen,
                            "chip revision check failed. Required >= v%d.%d, found v%d.%d.",
                            h->min_chip_rev_full / 100, h->min_chip_rev_full % 100, rev / 100, rev % 100);
        }
        if (!(flags & HOST_IMAGE_VERIFY_BOOTLOADER) && h->max_chip_rev_full != 0 && h->max_chip_rev_full != 0xFFFF &&
            rev > h->max_chip_rev_full) {
            return prv_fail(flags & ~HOST_IMAGE_VERIFY_SILENT, "boot_comm", err, errlen,
                            "chip revision check failed. Required <= v%d.%d, found v%d.%d.",
                            h->max_chip_rev_full / 100, h->max_chip_rev_full % 100, rev / 100, rev % 100);
        }
    }
    if (h->segment_count > ESP_IMAGE_MAX_SEGMENTS) {
        return prv_fail(flags, "esp_image", err, errlen, "image at 0x%x segment count %d exceeds max %d", part_offset,
                        h->segment_count, ESP_IMAGE_MAX_SEGMENTS);
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return prv_fail(flags, "esp_image", err, errlen, "SHA-256 unavailable");
    }
    EVP_DigestUpdate(sha, h, sizeof(*h));
    uint8_t checksum = ESP_IMAGE_CHECKSUM_SEED;
    uint32_t next = part_offset + (uint32_t)sizeof(*h);
    int rc = -1;
    info->segment_count = h->segment_count;
    for (int i = 0; i < h->segment_count; i++) {
        esp_image_segment_header_t *sh = &info->segments[i];
        if ((uint64_t)next + sizeof(*sh) > (uint64_t)part_offset + part_size || prv_read(src, next, sh, sizeof(*sh)) != 0) {
            prv_fail(flags, "esp_image", err, errlen, "bootloader_flash_read failed at 0x%08x", next);
            goto out;
        }
        EVP_DigestUpdate(sha, sh, sizeof(*sh));
        uint32_t data_addr = next + (uint32_t)sizeof(*sh);
        info->segment_data_addr[i] = data_addr;
        if ((sh->data_len & 3u) != 0 || sh->data_len >= HOST_MAX_FLASH_ADDR) {
            prv_fail(flags, "esp_image", err, errlen, "invalid segment length 0x%x", sh->data_len);
            goto out;
        }
        if (i == 0 && !(flags & HOST_IMAGE_VERIFY_BOOTLOADER) && sh->data_len < sizeof(esp_app_desc_t)) {
            prv_fail(flags & ~HOST_IMAGE_VERIFY_SILENT, "esp_image", err, errlen,
                     "Segment %d: length 0x%x is too short for app description", i, sh->data_len);
            goto out;
        }
        bool map = prv_should_map(chip, sh->load_addr);
        if (map && (data_addr % HOST_MMU_PAGE) != (sh->load_addr % HOST_MMU_PAGE)) {
            prv_fail(flags, "esp_image", err, errlen, "Segment %d load address 0x%08x, doesn't match data 0x%08x", i,
                     sh->load_addr, data_addr);
            goto out;
        }
        if ((uint64_t)data_addr + sh->data_len > (uint64_t)part_offset + part_size) {
            prv_fail(flags, "esp_image", err, errlen, "Image length %u doesn't fit in partition length %u",
                     (unsigned)(data_addr + sh->data_len - part_offset), part_size);
            goto out;
        }
        if (!(flags & HOST_IMAGE_VERIFY_SILENT)) {
            bool load = !map && sh->load_addr >= 0x10000000u;
            host_log('I', "esp_image", "segment %d: paddr=%08x vaddr=%08x size=%05xh (%6u) %s", i, data_addr,
                     sh->load_addr, sh->data_len, sh->data_len, load ? "load" : map ? "map" : "");
        }
        const uint8_t *data = prv_view(src, data_addr, sh->data_len);
        if (data == NULL) {
            prv_fail(flags, "esp_image", err, errlen, "bootloader_mmap(0x%x, 0x%x) failed", data_addr, sh->data_len);
            goto out;
        }
        for (uint32_t k = 0; k < sh->data_len; k++) {
            checksum ^= data[k];
        }
        EVP_DigestUpdate(sha, data, sh->data_len);
        if (i == 0 && !(flags & HOST_IMAGE_VERIFY_BOOTLOADER)) {
            memcpy(&info->app_desc, data, sizeof(info->app_desc));
            info->has_app_desc = info->app_desc.magic_word == ESP_APP_DESC_MAGIC_WORD;
        }
        next = data_addr + sh->data_len;
    }
    {
        uint32_t unpadded = next - part_offset;
        uint32_t padlen = ((unpadded + 1u + 15u) & ~15u) - unpadded;
        uint8_t pad[16];
        if (prv_read(src, next, pad, padlen) != 0) {
            prv_fail(flags, "esp_image", err, errlen, "bootloader_flash_read failed at 0x%08x", next);
            goto out;
        }
        info->checksum = pad[padlen - 1];
        if (info->checksum != checksum) {
            prv_fail(flags, "esp_image", err, errlen, "Checksum failed. Calculated 0x%x read 0x%x", checksum,
                     info->checksum);
            goto out;
        }
        EVP_DigestUpdate(sha, pad, padlen);
        next += padlen;
    }
    info->image_len = next - part_offset;
    if (h->hash_appended) {
        if ((uint64_t)next + ESP_IMAGE_HASH_LEN > (uint64_t)part_offset + part_size ||
            prv_read(src, next, info->digest, ESP_IMAGE_HASH_LEN) != 0) {
            prv_fail(flags, "esp_image", err, errlen, "Image length %u doesn't fit in partition length %u",
                     info->image_len + ESP_IMAGE_HASH_LEN, part_size);
            goto out;
        }
        info->image_len += ESP_IMAGE_HASH_LEN;
        uint8_t calc[32];
        unsigned int n = 32;
        EVP_DigestFinal_ex(sha, calc, &n);
        /* Like the IDF, the bootloader image's hash is not checked (esptool may rewrite its header). */
        if (!(flags & HOST_IMAGE_VERIFY_BOOTLOADER) && memcmp(calc, info->digest, 32) != 0) {
            prv_fail(flags & ~HOST_IMAGE_VERIFY_SILENT, "esp_image", err, errlen, "Image hash failed - image is corrupt");
            goto out;
        }
    }
    if (info->image_len > part_size) {
        prv_fail(flags, "esp_image", err, errlen, "Image length %u doesn't fit in partition length %u", info->image_len,
                 part_size);
        goto out;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(sha);
    return rc;
}

int host_image_verify(host_flash_t *f, uint32_t part_offset, uint32_t part_size, const host_chip_t *chip, int flags,
                      host_image_info_t *info, char *err, size_t errlen)
{
    prv_src_t src = {f, NULL, 0, part_offset};
    return prv_verify(&src, part_offset, part_size, chip, flags, info, err, errlen);
}

int host_image_verify_buffer(const uint8_t *img, size_t len, uint32_t flash_offset, const host_chip_t *chip, int flags,
                             host_image_info_t *info, char *err, size_t errlen)
{
    prv_src_t src = {NULL, img, len, flash_offset};
    return prv_verify(&src, flash_offset, (uint32_t)(len > HOST_MAX_FLASH_ADDR ? HOST_MAX_FLASH_ADDR : len), chip,
                      flags, info, err, errlen);
}

int host_image_find_exec(const host_flash_t *f, const host_image_info_t *info, const uint8_t **exec, size_t *len,
                         char *err, size_t errlen)
{
    if (info->segment_count < 1 || !info->has_app_desc) {
        snprintf(err, errlen, "the image has no esp_app_desc_t in segment 0, so it is not an app image");
        return -1;
    }
    uint32_t seg_len = info->segments[0].data_len;
    if (seg_len < sizeof(esp_app_desc_t) + sizeof(host_payload_hdr_t)) {
        snprintf(err, errlen, "segment 0 is too short to hold a host app");
        return -1;
    }
    const uint8_t *seg = host_flash_peek(f, info->segment_data_addr[0], seg_len);
    if (seg == NULL) {
        snprintf(err, errlen, "segment 0 lies outside the flash");
        return -1;
    }
    host_payload_hdr_t ph;
    memcpy(&ph, seg + sizeof(esp_app_desc_t), sizeof(ph));
    if (memcmp(ph.magic, HOST_PAYLOAD_MAGIC, sizeof(ph.magic)) != 0) {
        snprintf(err, errlen,
                 "the image is a valid ESP app image but carries no host executable (built by idf.py for real "
                 "silicon?); build it with esp-app-image from the host build");
        return -1;
    }
    if (ph.exec_len == 0 || ph.exec_len > seg_len - sizeof(esp_app_desc_t) - sizeof(ph)) {
        snprintf(err, errlen, "host payload length %u does not fit segment 0 (%u bytes)", ph.exec_len, seg_len);
        return -1;
    }
    *exec = seg + sizeof(esp_app_desc_t) + sizeof(ph);
    *len = ph.exec_len;
    return 0;
}
