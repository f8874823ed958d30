/*
 * The denial-of-service limits through ble-ota-device's frames, as the virtual rig drives them:
 * an idle link is dropped with a TERMINATE frame (the rig then reports the disconnect and the app
 * advertises again), in real time and in the rig's time (IDLE); refused updates make BEGIN wait
 * (the firmware's default, as on a chip) unless --refusal-backoff-max-s 0 turns that off.
 */
#include "device_harness.h"

#define CONN 1u
#define V2_CTRL 5u

/* A digest no key of this test has: the device then takes signed updates only. */
#define SOME_KEY_DIGEST "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void connect_dev(dh_dev_t *d)
{
    uint8_t p[5];
    dh_u16(p, CONN);
    dh_u16(p + 2, 247);
    REQUIRE(dh_call(d, 0x01, p, 4, NULL, 0) == 0);
    dh_u16(p + 2, V2_CTRL);
    p[4] = 1;
    REQUIRE(dh_call(d, 0x06, p, 5, NULL, 0) == 0);
}

/* IDLE: this much of the rig's time passes with nothing on the air. */
static void idle_ms(dh_dev_t *d, uint32_t ms)
{
    uint8_t p[4];
    dh_u32(p, ms);
    REQUIRE(dh_call(d, 0x09, p, 4, NULL, 0) == 0);
}

/* The rig's answer to TERMINATE: the link is down, NimBLE says the local host ended it (0x16). */
static void report_local_disconnect(dh_dev_t *d)
{
    uint8_t p[3];
    dh_u16(p, CONN);
    p[2] = 0x16;
    REQUIRE(dh_call(d, 0x02, p, 3, NULL, 0) == 0);
}

/* BEGIN without a manifest; returns BEGIN_RSP's status, or -1. */
static int begin_status(dh_dev_t *d)
{
    uint8_t h[5], cmd[44];
    memset(cmd, 0, sizeof(cmd));
    dh_u16(h, CONN);
    dh_u16(h + 2, V2_CTRL);
    h[4] = 1;
    cmd[0] = 0x10;
    dh_u32(cmd + 4, 0x20000u);
    memset(cmd + 8, 0x5a, 32);
    dh_u32(cmd + 40, 0x20000u);
    dh_clear(d);
    if (dh_call(d, 0x04, h, 5, cmd, sizeof(cmd)) != 0) {
        return -1;
    }
    for (unsigned i = d->n_got; i-- > 0;) {
        const dh_frame_t *f = &d->got[i];
        if (f->type == 0x82 && f->len >= 6 && f->data[2] == V2_CTRL && f->data[4] == 0x90) {
            return f->data[5];
        }
    }
    return -1;
}

/* The "for N ms" of the core's warning when it drops an idle link, or -1. */
static long idle_ms_logged(const dh_dev_t *d)
{
    const char *w = strstr(d->console, "started or moved on no update for ");
    return w == NULL ? -1 : strtol(w + strlen("started or moved on no update for "), NULL, 10);
}

TEST(an_idle_link_is_terminated_after_the_idle_timeout_and_the_app_advertises_again)
{
    const char *flash = htu_fresh_path("dos-idle.bin");
    const char *args[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--idle-timeout-s", "1",
                          NULL};
    dh_dev_t d;
    uint8_t term[3] = {0};
    uint8_t hello[16] = {0};

    dh_start(&d, args);
    connect_dev(&d);
    /* no frame comes in: the app's own tick (the writer task's wake-up on a chip) finds the link idle */
    REQUIRE_EQ_INT(dh_expect(&d, 0x8C, term, sizeof(term)), 3);
    CHECK_EQ_INT(term[0] | term[1] << 8, CONN);
    CHECK_EQ_HEX(term[2], 0x13); /* BLE_ERR_REM_USER_CONN_TERM, what the central hears */
    CHECK_CONTAINS(d.console, "conn 1 started or moved on no update for ");
    CHECK_CONTAINS(d.console, "disconnecting it so that others can update (CONFIG_BLE_OTA_IDLE_TIMEOUT_S)");
    CHECK(idle_ms_logged(&d) >= 1000);
    /* until the rig reports the link down, ticks go by without asking again */
    dh_clear(&d);
    usleep(1500u * 1000u);
    idle_ms(&d, 0u);
    CHECK_EQ_INT(dh_find(&d, 0x8C, 0, -1, 0), -1);
    report_local_disconnect(&d);
    CHECK_CONTAINS(d.console, "ble_ota: disconnect reason 0x216");
    REQUIRE(dh_expect(&d, 0x80, hello, sizeof(hello)) >= 1);
    CHECK_EQ_INT(hello[0], 1); /* advertising again */
    CHECK_EQ_INT(d.done_mismatch, 0);
    CHECK_EQ_INT(dh_end(&d), 0);
}

TEST(the_default_idle_timeout_is_30_s_of_the_rigs_time_and_0_never_drops)
{
    const char *flash = htu_fresh_path("dos-idle-default.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, NULL};
    const char *never[] = {"--flash", flash, "--idle-timeout-s", "0", NULL};
    dh_dev_t d;

    dh_start(&d, create);
    connect_dev(&d);
    dh_clear(&d);
    idle_ms(&d, 29000u);
    CHECK_EQ_INT(dh_find(&d, 0x8C, 0, -1, 0), -1);
    idle_ms(&d, 1000u);
    /* the drop comes with the frame that let the 30th second pass, before its FRAME_DONE */
    int t = dh_find(&d, 0x8C, 0, -1, 0);
    REQUIRE(t >= 0);
    CHECK_EQ_INT(d.got[t].len, 3);
    CHECK_EQ_HEX(d.got[t].data[2], 0x13);
    CHECK(idle_ms_logged(&d) >= 30000);
    CHECK(idle_ms_logged(&d) < 31000);
    CHECK_EQ_INT(dh_end(&d), 0);

    dh_start(&d, never);
    connect_dev(&d);
    dh_clear(&d);
    idle_ms(&d, 3600u * 1000u);
    CHECK_EQ_INT(dh_find(&d, 0x8C, 0, -1, 0), -1);
    CHECK(strstr(d.console, "started or moved on no update") == NULL);
    CHECK_EQ_INT(dh_end(&d), 0);
}

TEST(a_refused_begin_makes_the_next_wait_by_default_and_not_with_refusal_backoff_max_s_0)
{
    const char *flash = htu_fresh_path("dos-backoff.bin");
    const char *create[] = {"--flash", flash, "--create", "--image", BLE_OTA_TEST_APP_IMAGE, "--trusted-key-digest",
                            SOME_KEY_DIGEST, NULL};
    const char *off[] = {"--flash", flash, "--trusted-key-digest", SOME_KEY_DIGEST, "--refusal-backoff-max-s", "0",
                         NULL};
    dh_dev_t d;
    unsigned erases;

    /* signed updates only, and no manifest: UNSIGNED at BEGIN, before any erase */
    dh_start(&d, create);
    connect_dev(&d);
    erases = d.flash_ops[1];
    CHECK_EQ_INT(begin_status(&d), 12);
    CHECK_CONTAINS(d.console, "1 refused update(s) in a row: BEGIN is answered BUSY for 1000 ms");
    CHECK_EQ_INT(begin_status(&d), 8); /* BUSY: not even looked at */
    CHECK_CONTAINS(d.console, "BEGIN waits");
    /* once the second has passed, BEGIN is evaluated again; the next wait doubles */
    idle_ms(&d, 1000u);
    CHECK_EQ_INT(begin_status(&d), 12);
    CHECK_CONTAINS(d.console, "2 refused update(s) in a row: BEGIN is answered BUSY for 2000 ms");
    idle_ms(&d, 1000u);
    CHECK_EQ_INT(begin_status(&d), 8);
    CHECK_EQ_INT(d.flash_ops[1], erases);
    CHECK_EQ_INT(dh_end(&d), 0);

    /* the back-off turned off: refusals back to back, each evaluated */
    dh_start(&d, off);
    connect_dev(&d);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(begin_status(&d), 12);
    }
    CHECK(strstr(d.console, "refused update(s) in a row") == NULL);
    CHECK_EQ_INT(dh_end(&d), 0);
}

TEST(bad_limit_values_are_command_line_errors)
{
    const char *flash = htu_fresh_path("dos-bad.bin");
    const char *bad[][5] = {
        {"--flash", flash, "--idle-timeout-s", "x", NULL},
        {"--flash", flash, "--idle-timeout-s", "-1", NULL},
        {"--flash", flash, "--refusal-backoff-max-s", "3601", NULL},
        {"--flash", flash, "--refusal-backoff-max-s", "", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dh_dev_t d;
        dh_spawn(&d, bad[i]);
        CHECK_EQ_INT(dh_end(&d), 2);
    }
}
