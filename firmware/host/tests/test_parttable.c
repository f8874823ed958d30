/* partitions.csv -> ESP-IDF partition table binary (gen_esp32part.py format) and back. */
#include "host_test_util.h"
#include "parttable.h"

#include <openssl/evp.h>

static uint32_t prv_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

TEST(firmware_partitions_csv_parses_to_the_two_slot_layout)
{
    host_ptable_t t;
    char err[200];
    REQUIRE(host_ptable_parse_csv(host_partitions_csv, &t, err, sizeof(err)) == 0);
    static const struct {
        const char *label;
        uint8_t type, subtype;
        uint32_t offset, size;
    } want[] = {
        {"nvs", 0x01, 0x02, 0x9000, 0x4000},
        {"otadata", 0x01, 0x00, 0xd000, 0x2000},
        {"phy_init", 0x01, 0x01, 0xf000, 0x1000},
        {"ota_0", 0x00, 0x10, 0x10000, 0x1F0000},
        {"ota_1", 0x00, 0x11, 0x200000, 0x1F0000},
    };
    REQUIRE_EQ_INT(t.count, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        CHECK_EQ_STR(t.p[i].label, want[i].label);
        CHECK_EQ_HEX(t.p[i].type, want[i].type);
        CHECK_EQ_HEX(t.p[i].subtype, want[i].subtype);
        CHECK_EQ_HEX(t.p[i].offset, want[i].offset);
        CHECK_EQ_HEX(t.p[i].size, want[i].size);
    }
    CHECK_EQ_INT(host_ptable_ota_count(&t), 2);
    /* both slots must fit a 4 MB flash */
    CHECK(t.p[4].offset + t.p[4].size <= 4u * 1024u * 1024u);
}

TEST(binary_layout_matches_esp_partition_info_t)
{
    host_ptable_t t;
    char err[200];
    REQUIRE(host_ptable_parse_csv(host_partitions_csv, &t, err, sizeof(err)) == 0);
    uint8_t bin[0xC00];
    host_ptable_to_binary(&t, bin);
    /* entry 3 = ota_0: magic 0x50AA LE, type, subtype, offset, size, label[16], flags */
    const uint8_t *e = bin + 3 * 32;
    CHECK_EQ_HEX(e[0], 0xAA);
    CHECK_EQ_HEX(e[1], 0x50);
    CHECK_EQ_HEX(e[2], 0x00);
    CHECK_EQ_HEX(e[3], 0x10);
    CHECK_EQ_HEX(prv_u32(e + 4), 0x10000);
    CHECK_EQ_HEX(prv_u32(e + 8), 0x1F0000);
    char label[17] = {0};
    memcpy(label, e + 12, 16);
    CHECK_EQ_STR(label, "ota_0");
    CHECK_EQ_HEX(e[12 + 5], 0x00); /* label is NUL padded */
    CHECK_EQ_HEX(prv_u32(e + 28), 0);
    /* MD5 entry after the last partition: EB EB, 14 x FF, MD5 of the entries */
    const uint8_t *m = bin + 5 * 32;
    CHECK_EQ_HEX(m[0], 0xEB);
    CHECK_EQ_HEX(m[1], 0xEB);
    for (int i = 2; i < 16; i++) {
        CHECK_EQ_HEX(m[i], 0xFF);
    }
    uint8_t md5[16];
    unsigned int n = 16;
    EVP_Digest(bin, 5 * 32, md5, &n, EVP_md5(), NULL);
    CHECK_MEM_EQ(m + 16, md5, 16);
    for (size_t i = 6 * 32; i < sizeof(bin); i++) {
        if (bin[i] != 0xFF) {
            CHECK_MSG(bin[i] == 0xFF, "padding byte %zu is 0x%02x", i, bin[i]);
            break;
        }
    }
}

TEST(binary_round_trip)
{
    host_ptable_t t, back;
    char err[200];
    REQUIRE(host_ptable_parse_csv(host_partitions_csv, &t, err, sizeof(err)) == 0);
    uint8_t bin[0xC00];
    host_ptable_to_binary(&t, bin);
    REQUIRE(host_ptable_from_binary(bin, sizeof(bin), &back, err, sizeof(err)) == 0);
    REQUIRE_EQ_INT(back.count, t.count);
    for (int i = 0; i < t.count; i++) {
        CHECK_EQ_STR(back.p[i].label, t.p[i].label);
        CHECK_EQ_HEX(back.p[i].type, t.p[i].type);
        CHECK_EQ_HEX(back.p[i].subtype, t.p[i].subtype);
        CHECK_EQ_HEX(back.p[i].offset, t.p[i].offset);
        CHECK_EQ_HEX(back.p[i].size, t.p[i].size);
    }
}

TEST(corrupt_table_is_refused)
{
    host_ptable_t t, back;
    char err[200];
    REQUIRE(host_ptable_parse_csv(host_partitions_csv, &t, err, sizeof(err)) == 0);
    uint8_t bin[0xC00];
    host_ptable_to_binary(&t, bin);
    bin[3 * 32 + 5] ^= 0x01; /* ota_0 offset */
    CHECK(host_ptable_from_binary(bin, sizeof(bin), &back, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "MD5");
    host_ptable_to_binary(&t, bin);
    bin[32] = 0x12; /* magic of entry 1 */
    CHECK(host_ptable_from_binary(bin, sizeof(bin), &back, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "bad magic");
    memset(bin, 0xFF, sizeof(bin));
    CHECK(host_ptable_from_binary(bin, sizeof(bin), &back, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "blank");
}

TEST(csv_syntax_suffixes_comments_and_auto_offsets)
{
    const char *csv = "# Name, Type, SubType, Offset, Size, Flags\n"
                      "nvs, data, nvs, , 24K,\n"
                      "phy_init, data, phy, , 4K\n"
                      "factory, app, factory, , 1M\n"
                      "ota_0, app, ota_0, , 1M, encrypted\n";
    host_ptable_t t;
    char err[200];
    REQUIRE(host_ptable_parse_csv(csv, &t, err, sizeof(err)) == 0);
    REQUIRE_EQ_INT(t.count, 4);
    CHECK_EQ_HEX(t.p[0].offset, 0x9000);
    CHECK_EQ_HEX(t.p[0].size, 0x6000);
    CHECK_EQ_HEX(t.p[1].offset, 0xF000);
    CHECK_EQ_HEX(t.p[2].offset, 0x10000);
    CHECK_EQ_HEX(t.p[2].size, 0x100000);
    CHECK_EQ_HEX(t.p[3].offset, 0x110000);
    CHECK_EQ_HEX(t.p[3].flags, 1);
    CHECK_EQ_STR(host_ptable_usage(&t.p[2]), "factory app");
    CHECK_EQ_STR(host_ptable_usage(&t.p[0]), "WiFi data");

    CHECK(host_ptable_parse_csv("ota_0, app, ota_0, 0x10800, 1M\n", &t, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "not aligned");
    CHECK(host_ptable_parse_csv("a, data, nvs, 0x9000, 0x4000\nb, data, nvs, 0xA000, 0x1000\n", &t, err, sizeof(err)) !=
          0);
    CHECK_CONTAINS(err, "overlaps");
    CHECK(host_ptable_parse_csv("x, data, bogus, 0x9000, 0x1000\n", &t, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "unknown subtype");
}
