/*
 * The realistic image's app: the firmware's OTA core behind a port whose calls end in the C
 * library, as an IDF app's port ends in IDF. It is never run (there is no start-up code for a
 * chip here); it makes the linker keep the core and gives the image an app's shape: code and
 * data the way GCC lays them out for RV32IMC.
 */
#include "ble_ota.h"
#include "ble_ota_port.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The C3's RNG data register (ESP32-C3 TRM, "Random Number Generator": RNG_DATA_REG). */
#define RNG_DATA (*(volatile uint32_t *)0x600260B0u)
/* The system timer's low word, read as the microsecond clock. */
#define TIMER_LO (*(volatile uint32_t *)0x60023004u)

int getentropy(void *buf, size_t len)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)RNG_DATA;
    }
    return 0;
}

static uint32_t prv_now_ms(void *ctx)
{
    (void)ctx;
    return TIMER_LO / 1000u;
}

static void prv_log(void *ctx, ble_ota_log_level_t level, const char *tag, const char *fmt, va_list ap)
{
    (void)ctx;
    printf("%c (%lu) %s: ", "EWIDV"[level % 5], (unsigned long)prv_now_ms(NULL), tag);
    vprintf(fmt, ap);
    putchar('\n');
}

int main(void)
{
    static ble_ota_port_t port;
    memset(&port, 0, sizeof(port));
    port.now_ms = prv_now_ms;
    port.log = prv_log;
    int rc = ble_ota_init(&port, NULL);
    printf("ble_ota_init: %d\n", rc);
    return rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
