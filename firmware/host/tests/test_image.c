/*
 * The image builder's output, checked byte by byte against the ESP-IDF definitions
 * (esp_image_header_t, esp_image_segment_header_t, esp_app_desc_t) rather than through
 * the builder's own structs, and the verifier's refusals.
 */
#include "host_test_util.h"

#include <openssl/evp.h>

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t prv_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint8_t *prv_build(const char *chip, const uint8_t *exec, size_t exec_len, size_t *len)
{
    host_app_image_params_t p;
    memset(&p, 0, sizeof(p));
    p.chip = host_chip_by_name(chip);
    p.version = "2.5.0-rc1";
    p.project_name = "esp_ble_ota";
    p.idf_ver = "v5.3.1";
    p.date = "Nov 24 2026";
    p.time = "21:30:00";
    p.secure_version = 7;
    p.exec = exec;
    p.exec_len = exec_len;
    host_sha256(exec, exec_len, p.elf_sha256);
    uint8_t *img = NULL;
    char err[200];
    if (host_app_image_build(&p, &img, len, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return img;
}

TEST(header_fields_match_esp_image_header_t)
{
    uint8_t exec[1001];
    for (size_t i = 0; i < sizeof(exec); i++) {
        exec[i] = (uint8_t)i;
    }
    size_t len;
    uint8_t *img = prv_build("esp32s3", exec, sizeof(exec), &len);
    REQUIRE(img != NULL);
    CHECK_EQ_HEX(img[0], 0xE9);        /* magic */
    CHECK_EQ_INT(img[1], 1);           /* segment_count */
    CHECK_EQ_INT(img[2], 2);           /* spi_mode DIO */
    CHECK_EQ_HEX(img[3] & 0x0F, 0x0);  /* spi_speed: low nibble, DIV_2 */
    CHECK_EQ_HEX(img[3] >> 4, 0x2);    /* spi_size: high nibble, 4MB */
    CHECK_EQ_HEX(prv_u32(img + 4), 0x3C000020u + 256u + 16u); /* entry_addr: where the executable starts */
    CHECK_EQ_HEX(img[8], 0xEE);        /* wp_pin disabled */
    CHECK_EQ_HEX(img[9], 0);           /* spi_pin_drv[3] */
    CHECK_EQ_HEX(img[10], 0);
    CHECK_EQ_HEX(img[11], 0);
    CHECK_EQ_HEX(prv_u16(img + 12), 0x0009); /* chip_id ESP32-S3 */
    CHECK_EQ_INT(img[14], 0);                /* min_chip_rev */
    CHECK_EQ_INT(prv_u16(img + 15), 0);      /* min_chip_rev_full */
    CHECK_EQ_INT(prv_u16(img + 17), 99);     /* max_chip_rev_full v0.99 */
    for (int i = 19; i < 23; i++) {
        CHECK_EQ_HEX(img[i], 0); /* reserved */
    }
    CHECK_EQ_INT(img[23], 1); /* hash_appended */
    free(img);
}

TEST(segment_and_app_desc_match_esp_app_desc_t)
{
    uint8_t exec[1001];
    memset(exec, 0x5A, sizeof(exec));
    size_t len;
    uint8_t *img = prv_build("esp32", exec, sizeof(exec), &len);
    REQUIRE(img != NULL);
    const uint8_t *seg = img + 24;
    CHECK_EQ_HEX(prv_u32(seg), 0x3F400020u); /* load_addr in DROM, congruent to paddr 0x20 mod 64K */
    uint32_t data_len = prv_u32(seg + 4);
    CHECK_EQ_INT(data_len, (256 + 16 + 1001 + 3) & ~3);
    CHECK_EQ_INT(data_len % 4, 0);
    const uint8_t *d = seg + 8;
    CHECK_EQ_HEX(prv_u32(d + 0), 0xABCD5432u); /* magic_word */
    CHECK_EQ_INT(prv_u32(d + 4), 7);           /* secure_version */
    CHECK_EQ_INT(prv_u32(d + 8), 0);           /* reserv1 */
    CHECK_EQ_STR((const char *)d + 16, "2.5.0-rc1");   /* version[32] */
    CHECK_EQ_STR((const char *)d + 48, "esp_ble_ota"); /* project_name[32] */
    CHECK_EQ_STR((const char *)d + 80, "21:30:00");    /* time[16] */
    CHECK_EQ_STR((const char *)d + 96, "Nov 24 2026"); /* date[16] */
    CHECK_EQ_STR((const char *)d + 112, "v5.3.1");     /* idf_ver[32] */
    uint8_t sha[32];
    host_sha256(exec, sizeof(exec), sha);
    CHECK_MEM_EQ(d + 144, sha, 32); /* app_elf_sha256 */
    CHECK_EQ_INT(d[180], 16);       /* mmu_page_size: log2(64K) */
    CHECK_EQ_INT(d[181], 2);        /* spi_flash_mode */
    /* the host payload follows the 256-byte descriptor */
    CHECK_MEM_EQ(d + 256, "ESPHOSTAPPv1", 12);
    CHECK_EQ_INT(prv_u32(d + 268), 1001);
    CHECK_MEM_EQ(d + 272, exec, sizeof(exec));
    free(img);
}

TEST(checksum_byte_ends_a_16_byte_block_and_sha256_covers_everything_before)
{
    uint8_t exec[777];
    for (size_t i = 0; i < sizeof(exec); i++) {
        exec[i] = (uint8_t)(i * 13);
    }
    size_t len;
    uint8_t *img = prv_build("esp32c3", exec, sizeof(exec), &len);
    REQUIRE(img != NULL);
    uint32_t data_len = prv_u32(img + 24 + 4);
    size_t unpadded = 24 + 8 + data_len;
    size_t padded = len - 32;
    CHECK_EQ_INT(padded % 16, 0);
    CHECK(padded > unpadded);
    CHECK(padded - unpadded <= 16);
    uint8_t x = 0xEF;
    for (size_t i = 0; i < data_len; i++) {
        x ^= img[32 + i];
    }
    CHECK_EQ_HEX(img[padded - 1], x);
    for (size_t i = unpadded; i < padded - 1; i++) {
        CHECK_EQ_HEX(img[i], 0);
    }
    uint8_t sha[32];
    unsigned int n = 32;
    EVP_Digest(img, padded, sha, &n, EVP_sha256(), NULL);
    CHECK_MEM_EQ(img + padded, sha, 32);

    host_image_info_t info;
    char err[200];
    host_io_init(HOST_IO_CAPTURE, -1);
    REQUIRE(host_image_verify_buffer(img, len, 0x10000, host_chip_by_name("esp32c3"), 0, &info, err, sizeof(err)) == 0);
    CHECK_EQ_INT(info.image_len, len);
    CHECK_EQ_INT(info.segment_count, 1);
    CHECK(info.has_app_desc);
    CHECK_EQ_STR(info.app_desc.version, "2.5.0-rc1");
    CHECK_CONTAINS(host_io_captured_console(), "esp_image: segment 0: paddr=00010020 vaddr=3c000020 size=");
    CHECK_CONTAINS(host_io_captured_console(), ") map");
    host_io_capture_reset();
    free(img);
}

TEST(chip_ids_and_drom_addresses)
{
    static const struct {
        const char *name;
        uint16_t id;
        uint32_t drom;
    } want[] = {{"esp32", 0, 0x3F400000u},   {"esp32s2", 2, 0x3F000000u},  {"esp32c3", 5, 0x3C000000u},
                {"esp32s3", 9, 0x3C000000u}, {"esp32c2", 12, 0x3C000000u}, {"esp32c6", 13, 0x42800000u},
                {"esp32h2", 16, 0x42800000u}};
    uint8_t exec[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        size_t len;
        uint8_t *img = prv_build(want[i].name, exec, sizeof(exec), &len);
        REQUIRE(img != NULL);
        CHECK_EQ_INT(prv_u16(img + 12), want[i].id);
        CHECK_EQ_HEX(prv_u32(img + 24), want[i].drom + 0x20);
        free(img);
    }
    CHECK(host_chip_by_name("esp8266") == NULL);
}

static int prv_verify(uint8_t *img, size_t len, const char *chip, char *err, size_t errlen)
{
    host_image_info_t info;
    return host_image_verify_buffer(img, len, 0x10000, host_chip_by_name(chip), HOST_IMAGE_VERIFY_SILENT, &info, err,
                                    errlen);
}

TEST(verifier_refuses_corrupt_images)
{
    uint8_t exec[600];
    memset(exec, 0x33, sizeof(exec));
    size_t len;
    uint8_t *good = prv_build("esp32", exec, sizeof(exec), &len);
    REQUIRE(good != NULL);
    uint8_t *img = malloc(len);
    char err[200];
    host_io_init(HOST_IO_CAPTURE, -1);

    memcpy(img, good, len);
    CHECK_EQ_INT(prv_verify(img, len, "esp32", err, sizeof(err)), 0);

    memcpy(img, good, len);
    img[0] = 0xFF;
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "invalid magic byte");

    memcpy(img, good, len);
    img[32 + 300] ^= 0x01; /* a data byte: the checksum catches it first */
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "Checksum failed");

    memcpy(img, good, len);
    img[32 + 300] ^= 0x03;
    img[32 + 301] ^= 0x03; /* checksum-neutral change: only the SHA-256 catches it */
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "Image hash failed - image is corrupt");

    memcpy(img, good, len);
    CHECK(prv_verify(img, len, "esp32s3", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "mismatch chip ID, expected 9, found 0");

    memcpy(img, good, len);
    img[28] = 0x02; /* segment length not a multiple of 4 */
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "invalid segment length");

    memcpy(img, good, len);
    img[1] = 17;
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "segment count 17 exceeds max 16");

    /* truncated: the short last packet of the baseline's defect would look like this */
    memcpy(img, good, len);
    CHECK(prv_verify(img, len - 40, "esp32", err, sizeof(err)) != 0);

    /* load address not congruent with its flash offset modulo the MMU page */
    memcpy(img, good, len);
    img[24] ^= 0x04;
    CHECK(prv_verify(img, len, "esp32", err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "doesn't match data");
    host_io_capture_reset();
    free(img);
    free(good);
}

TEST(bootloader_image_carries_the_chip)
{
    uint8_t *img = NULL;
    size_t len = 0;
    char err[200];
    REQUIRE(host_bootloader_image_build(host_chip_by_name("esp32c3"), "v5.3.1", "Nov 24 2026 21:00:00", &img, &len, err,
                                        sizeof(err)) == 0);
    CHECK_EQ_HEX(img[0], 0xE9);
    CHECK_EQ_INT(prv_u16(img + 12), 5);
    const uint8_t *d = img + 32;
    CHECK_EQ_HEX(d[0], 0x50); /* esp_bootloader_desc_t.magic_byte */
    CHECK_EQ_STR((const char *)d + 8, "v5.3.1");
    CHECK_EQ_STR((const char *)d + 40, "Nov 24 2026 21:00:00");
    free(img);
}
