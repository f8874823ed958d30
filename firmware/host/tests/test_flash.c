/* NOR flash rules, operation counting and power cuts of the file-backed flash. */
#include "host_test_util.h"

#include <sys/wait.h>

static void prv_open_blank(host_flash_t *f, const char *name, size_t size)
{
    char err[200];
    const char *path = htu_path(name);
    REQUIRE(host_flash_create_file(path, size, err, sizeof(err)) == 0);
    REQUIRE(host_flash_open(f, path, err, sizeof(err)) == 0);
}

TEST(new_flash_is_erased)
{
    host_flash_t f;
    prv_open_blank(&f, "blank.bin", 64 * 1024);
    uint8_t buf[64];
    REQUIRE(host_flash_read(&f, 0x1000, buf, sizeof(buf)) == 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        CHECK_EQ_HEX(buf[i], 0xFF);
    }
    CHECK_EQ_INT(f.ops, 0);
    host_flash_close(&f);
}

TEST(write_can_only_clear_bits)
{
    host_flash_t f;
    prv_open_blank(&f, "nor.bin", 16 * 1024);
    const uint8_t a[4] = {0xF0, 0x0F, 0xAA, 0x55};
    REQUIRE(host_flash_write(&f, 0x10, a, 4) == 0);
    /* clearing further bits of written bytes is what NOR allows */
    const uint8_t b[4] = {0xF0, 0x0F, 0x00, 0x55};
    CHECK(host_flash_write(&f, 0x10, b, 4) == 0);
    /* setting a bit back to 1 needs an erase */
    const uint8_t c[1] = {0xFF};
    CHECK(host_flash_write(&f, 0x12, c, 1) != 0);
    CHECK_CONTAINS(f.error, "NOR flash violation");
    CHECK_CONTAINS(f.error, "0x00000012");
    uint8_t got[4];
    REQUIRE(host_flash_read(&f, 0x10, got, 4) == 0);
    CHECK_MEM_EQ(got, b, 4);
    /* a refused write changes nothing and is not counted */
    CHECK_EQ_INT(f.ops, 2);
    host_flash_close(&f);
}

TEST(erase_is_by_aligned_4k_sector)
{
    host_flash_t f;
    prv_open_blank(&f, "erase.bin", 32 * 1024);
    uint8_t zeros[8192];
    memset(zeros, 0, sizeof(zeros));
    REQUIRE(host_flash_write(&f, 0x1000, zeros, sizeof(zeros)) == 0);
    CHECK(host_flash_erase(&f, 0x1800, 0x1000) != 0);
    CHECK_CONTAINS(f.error, "not aligned");
    CHECK(host_flash_erase(&f, 0x1000, 0x800) != 0);
    REQUIRE(host_flash_erase(&f, 0x1000, 0x1000) == 0);
    uint8_t b;
    REQUIRE(host_flash_read(&f, 0x1FFF, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0xFF);
    REQUIRE(host_flash_read(&f, 0x2000, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0x00);
    /* one write + one sector erase */
    CHECK_EQ_INT(f.ops, 2);
    /* a multi-sector erase without a whole aligned 64 KB block counts one operation per sector */
    REQUIRE(host_flash_erase(&f, 0x2000, 0x3000) == 0);
    CHECK_EQ_INT(f.ops, 5);
    CHECK(host_flash_erase(&f, 0x7000, 0x2000) != 0); /* past the end */
    host_flash_close(&f);
}

static int s_observed[4];
static void prv_observer(void *ctx, host_flash_op_t op, uint32_t addr, uint32_t len)
{
    (void)ctx;
    (void)addr;
    (void)len;
    s_observed[op]++;
}

TEST(every_operation_is_observed)
{
    host_flash_t f;
    prv_open_blank(&f, "obs.bin", 16 * 1024);
    memset(s_observed, 0, sizeof(s_observed));
    f.observer = prv_observer;
    uint8_t b = 0x12;
    REQUIRE(host_flash_erase(&f, 0, 0x2000) == 0);
    REQUIRE(host_flash_write(&f, 0, &b, 1) == 0);
    REQUIRE(host_flash_read(&f, 0, &b, 1) == 0);
    CHECK_EQ_INT(s_observed[HOST_FLASH_OP_ERASE], 2);
    CHECK_EQ_INT(s_observed[HOST_FLASH_OP_WRITE], 1);
    CHECK_EQ_INT(s_observed[HOST_FLASH_OP_READ], 1);
    host_flash_close(&f);
}

/* Runs ops on the flash file at path in a child process, as a boot that loses power at the
 * power_cut_at-th erase/write; returns the child's exit code (137 when the power went). */
static int prv_run_until_power_cut_mode(const char *path, uint64_t power_cut_at, bool torn,
                                        void (*ops)(host_flash_t *f))
{
    char err[200];
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        host_flash_t f;
        if (host_flash_open(&f, path, err, sizeof(err)) != 0) {
            _exit(1);
        }
        f.power_cut_at = power_cut_at;
        f.power_cut_torn = torn;
        ops(&f);
        _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int prv_run_until_power_cut(const char *path, uint64_t power_cut_at, void (*ops)(host_flash_t *f))
{
    return prv_run_until_power_cut_mode(path, power_cut_at, false, ops);
}

static void prv_three_writes(host_flash_t *f)
{
    const uint8_t one = 0x01, two = 0x02, three = 0x03;
    host_flash_write(f, 0, &one, 1);   /* op 1 */
    host_flash_write(f, 1, &two, 1);   /* op 2 */
    host_flash_write(f, 2, &three, 1); /* op 3: the power goes */
}

TEST(power_cut_skips_the_operation_and_exits_137)
{
    char err[200];
    const char *path = htu_path("cut.bin");
    REQUIRE(host_flash_create_file(path, 16 * 1024, err, sizeof(err)) == 0);
    CHECK_EQ_INT(prv_run_until_power_cut(path, 3, prv_three_writes), 137);
    host_flash_t f;
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    uint8_t got[3];
    REQUIRE(host_flash_read(&f, 0, got, 3) == 0);
    const uint8_t want[3] = {0x01, 0x02, 0xFF};
    CHECK_MEM_EQ(got, want, 3);
    host_flash_close(&f);
}

static uint32_t s_erase_addr[32], s_erase_len[32];
static unsigned s_n_erases;
static void prv_erase_recorder(void *ctx, host_flash_op_t op, uint32_t addr, uint32_t len)
{
    (void)ctx;
    if (op == HOST_FLASH_OP_ERASE && s_n_erases < 32) {
        s_erase_addr[s_n_erases] = addr;
        s_erase_len[s_n_erases++] = len;
    }
}

TEST(an_aligned_64k_piece_of_an_erase_is_one_block_erase)
{
    host_flash_t f;
    prv_open_blank(&f, "block.bin", 256 * 1024);
    s_n_erases = 0;
    f.observer = prv_erase_recorder;
    /* as esp_flash_erase_region: sectors up to the block boundary, the block, the rest */
    REQUIRE(host_flash_erase(&f, 0x8000, 0x19000) == 0);
    REQUIRE_EQ_INT(s_n_erases, 10);
    for (unsigned i = 0; i < 8; i++) {
        CHECK_EQ_HEX(s_erase_addr[i], 0x8000 + i * 0x1000);
        CHECK_EQ_HEX(s_erase_len[i], 0x1000);
    }
    CHECK_EQ_HEX(s_erase_addr[8], 0x10000);
    CHECK_EQ_HEX(s_erase_len[8], 0x10000);
    CHECK_EQ_HEX(s_erase_addr[9], 0x20000);
    CHECK_EQ_HEX(s_erase_len[9], 0x1000);
    CHECK_EQ_INT(f.ops, 10);
    /* a block-sized erase that is not block aligned is 16 sector erases */
    s_n_erases = 0;
    REQUIRE(host_flash_erase(&f, 0x21000, 0x10000) == 0);
    CHECK_EQ_INT(s_n_erases, 16);
    CHECK_EQ_INT(f.ops, 26);
    host_flash_close(&f);
}

static void prv_fill_then_erase_across_a_block(host_flash_t *f)
{
    static uint8_t zeros[0x19000];
    host_flash_write(f, 0x8000, zeros, sizeof(zeros)); /* op 1 */
    host_flash_erase(f, 0x8000, 0x19000);              /* ops 2-9: sectors; op 10: the block */
}

TEST(a_power_cut_at_a_block_erase_skips_the_whole_block)
{
    char err[200];
    const char *path = htu_path("cut-block.bin");
    REQUIRE(host_flash_create_file(path, 256 * 1024, err, sizeof(err)) == 0);
    CHECK_EQ_INT(prv_run_until_power_cut(path, 10, prv_fill_then_erase_across_a_block), 137);
    host_flash_t f;
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    uint8_t b;
    REQUIRE(host_flash_read(&f, 0xFFFF, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0xFF); /* the sectors before it were erased */
    REQUIRE(host_flash_read(&f, 0x10000, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0x00); /* the block was not, not even its first sector */
    REQUIRE(host_flash_read(&f, 0x1FFFF, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0x00);
    host_flash_close(&f);
}

static void prv_write_then_erase(host_flash_t *f)
{
    static uint8_t zeros[0x10000];
    const uint8_t eight[8] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17};
    host_flash_write(f, 0x10000, zeros, sizeof(zeros)); /* op 1 */
    host_flash_write(f, 0x100, eight, sizeof(eight));    /* op 2 */
    host_flash_erase(f, 0x10000, 0x10000);              /* op 3: one block erase */
}

TEST(a_torn_write_programs_a_prefix_and_a_torn_erase_leaves_the_block_half_erased)
{
    char err[200];
    host_flash_t f;
    uint8_t got[8];
    uint8_t b;
    const char *path = htu_path("torn.bin");

    /* torn at op 2: the first 4 of 8 bytes programmed, the rest still erased */
    REQUIRE(host_flash_create_file(path, 256 * 1024, err, sizeof(err)) == 0);
    CHECK_EQ_INT(prv_run_until_power_cut_mode(path, 2, true, prv_write_then_erase), 137);
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    REQUIRE(host_flash_read(&f, 0x100, got, sizeof(got)) == 0);
    const uint8_t want[8] = {0x10, 0x11, 0x12, 0x13, 0xFF, 0xFF, 0xFF, 0xFF};
    CHECK_MEM_EQ(got, want, 8);
    host_flash_close(&f);

    /* torn at op 3: the block's first 32 KB erased, the rest as written */
    REQUIRE(host_flash_create_file(path, 256 * 1024, err, sizeof(err)) == 0);
    CHECK_EQ_INT(prv_run_until_power_cut_mode(path, 3, true, prv_write_then_erase), 137);
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    REQUIRE(host_flash_read(&f, 0x17FFF, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0xFF);
    REQUIRE(host_flash_read(&f, 0x18000, &b, 1) == 0);
    CHECK_EQ_HEX(b, 0x00);
    host_flash_close(&f);
}

/* The journal holds each completed operation, in order, so that replaying its first N records
 * on the power-on flash gives the flash after operation N (the bench's full power-cut sweep). */
TEST(the_journal_records_each_completed_operation_with_a_writes_bytes)
{
    char err[200];
    host_flash_t f;
    const char *path = htu_path("journal-flash.bin");
    const char *journal = htu_fresh_path("journal.bin");
    REQUIRE(host_flash_create_file(path, 256 * 1024, err, sizeof(err)) == 0);
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    REQUIRE(host_flash_journal_open(&f, journal, err, sizeof(err)) == 0);
    const uint8_t data[3] = {0x01, 0x02, 0x03};
    REQUIRE(host_flash_write(&f, 0x2000, data, sizeof(data)) == 0);
    const uint8_t bad[1] = {0xFF};
    CHECK(host_flash_write(&f, 0x2000, bad, 1) != 0); /* refused: not journaled */
    REQUIRE(host_flash_erase(&f, 0x10000, 0x11000) == 0); /* a block, then a sector */
    host_flash_close(&f);

    size_t len = 0;
    uint8_t *j = host_read_file(journal, &len, err, sizeof(err));
    REQUIRE(j != NULL);
    const uint8_t want[] = {
        2, 0x00, 0x20, 0, 0, 3, 0, 0, 0, 0x01, 0x02, 0x03, /* write 3 bytes at 0x2000 */
        1, 0x00, 0x00, 0x01, 0, 0x00, 0x00, 0x01, 0,       /* block erase at 0x10000 */
        1, 0x00, 0x00, 0x02, 0, 0x00, 0x10, 0, 0,          /* sector erase at 0x20000 */
    };
    CHECK_EQ_INT(len, sizeof(want));
    CHECK_MEM_EQ(j, want, sizeof(want));
    free(j);

    /* a second process (the app the bootloader starts) appends to the same journal */
    REQUIRE(host_flash_open(&f, path, err, sizeof(err)) == 0);
    REQUIRE(host_flash_journal_open(&f, journal, err, sizeof(err)) == 0);
    REQUIRE(host_flash_erase(&f, 0x3000, 0x1000) == 0);
    host_flash_close(&f);
    j = host_read_file(journal, &len, err, sizeof(err));
    REQUIRE(j != NULL);
    CHECK_EQ_INT(len, sizeof(want) + 9);
    free(j);
}

TEST(open_refuses_bad_files)
{
    host_flash_t f;
    char err[200];
    CHECK(host_flash_open(&f, htu_path("does-not-exist.bin"), err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "--create");
    const char *odd = htu_path("odd.bin");
    FILE *fp = fopen(odd, "wb");
    REQUIRE(fp != NULL);
    fputs("not a flash", fp);
    fclose(fp);
    CHECK(host_flash_open(&f, odd, err, sizeof(err)) != 0);
    CHECK_CONTAINS(err, "4 KB sectors");
}
