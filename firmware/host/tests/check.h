/*
 * check.h: a tiny self-contained C test framework for the host build.
 *
 * Each tests/test_*.c file is its own executable; it includes this header once and
 * defines tests with TEST(name) { ... }. The header provides main() (unless
 * CHECK_NO_MAIN is defined before including it), which runs every test in definition
 * order, or only the tests whose names are given on the command line, and exits
 * non-zero if any check failed.
 *
 *   CHECK(cond)                 non-fatal: records the failure and continues
 *   REQUIRE(cond)               fatal: records the failure and leaves the current test
 *   CHECK_EQ_INT(a, b)          signed comparison, prints both values
 *   CHECK_EQ_HEX(a, b)          unsigned comparison, prints both values in hex
 *   CHECK_EQ_STR(a, b)          strcmp, prints both strings (NULL-safe)
 *   CHECK_MEM_EQ(a, b, len)     memcmp, prints the first differing offset and bytes
 *   REQUIRE_EQ_INT / REQUIRE_EQ_HEX / REQUIRE_MEM_EQ: fatal variants
 *   CHECK_MSG(cond, fmt, ...)   like CHECK with a printf-style explanation
 *
 * Tests register themselves through a GCC/Clang constructor, so no list has to be kept.
 */
#ifndef CHECK_H
#define CHECK_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*check_fn_t)(void);

struct check_test {
    const char *name;
    check_fn_t fn;
    struct check_test *next;
};

struct check_state {
    struct check_test *head;
    struct check_test *running;
    struct check_test *tail;
    const char *current;
    int current_failed;
    unsigned checks;
    unsigned failures;
    jmp_buf bail;
};

/* One instance per executable: the header is included by exactly one .c file per test. */
static struct check_state check_s_state;

static inline void check_register(struct check_test *t)
{
    t->next = NULL;
    if (check_s_state.tail) {
        check_s_state.tail->next = t;
    } else {
        check_s_state.head = t;
    }
    check_s_state.tail = t;
}

#define TEST(name)                                                                   \
    static void check_test_fn_##name(void);                                          \
    static struct check_test check_test_rec_##name = {#name, check_test_fn_##name, NULL}; \
    __attribute__((constructor)) static void check_test_reg_##name(void)             \
    {                                                                                \
        check_register(&check_test_rec_##name);                                      \
    }                                                                                \
    static void check_test_fn_##name(void)

static inline void check_fail_header(const char *file, int line)
{
    if (!check_s_state.current_failed) {
        fprintf(stderr, "FAIL %s\n", check_s_state.current ? check_s_state.current : "?");
    }
    check_s_state.current_failed = 1;
    check_s_state.failures++;
    fprintf(stderr, "  %s:%d: ", file, line);
}

__attribute__((format(printf, 4, 5))) static inline int check_report(int ok, const char *file,
                                                                      int line, const char *fmt, ...)
{
    check_s_state.checks++;
    if (ok) {
        return 1;
    }
    check_fail_header(file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

static inline void check_dump_row(const char *label, const uint8_t *p, size_t len, size_t from)
{
    size_t to = from + 16 < len ? from + 16 : len;
    fprintf(stderr, "    %s @%06zx:", label, from);
    for (size_t i = from; i < to; i++) {
        fprintf(stderr, " %02x", p[i]);
    }
    fputc('\n', stderr);
}

static inline int check_mem(const void *a, const void *b, size_t len, const char *ea, const char *eb,
                            const char *file, int line)
{
    check_s_state.checks++;
    const uint8_t *pa = (const uint8_t *)a;
    const uint8_t *pb = (const uint8_t *)b;
    if (pa == NULL || pb == NULL) {
        if (pa == pb || len == 0) {
            return 1;
        }
        check_fail_header(file, line);
        fprintf(stderr, "CHECK_MEM_EQ(%s, %s, %zu): NULL pointer\n", ea, eb, len);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (pa[i] != pb[i]) {
            check_fail_header(file, line);
            fprintf(stderr, "CHECK_MEM_EQ(%s, %s, %zu): first difference at offset %zu: 0x%02x != 0x%02x\n",
                    ea, eb, len, i, pa[i], pb[i]);
            size_t row = i & ~(size_t)15;
            check_dump_row("left ", pa, len, row);
            check_dump_row("right", pb, len, row);
            return 0;
        }
    }
    return 1;
}

static inline int check_str(const char *a, const char *b, const char *ea, const char *eb,
                            const char *file, int line)
{
    int ok = (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
    return check_report(ok, file, line, "CHECK_EQ_STR(%s, %s): \"%s\" != \"%s\"", ea, eb,
                        a ? a : "(null)", b ? b : "(null)");
}

static inline void check_bail(void)
{
    longjmp(check_s_state.bail, 1);
}

#define CHECK(cond) ((void)check_report(!!(cond), __FILE__, __LINE__, "CHECK(%s) failed", #cond))

#define CHECK_MSG(cond, ...)                                                              \
    do {                                                                                  \
        if (!check_report(!!(cond), __FILE__, __LINE__, "CHECK(%s) failed", #cond)) {     \
            fprintf(stderr, "    ");                                                      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                       \
    do {                                                                                         \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                          \
        (void)check_report(check_a_ == check_b_, __FILE__, __LINE__,                             \
                           "CHECK_EQ_INT(%s, %s): %lld != %lld", #a, #b, check_a_, check_b_);   \
    } while (0)

#define CHECK_EQ_HEX(a, b)                                                                            \
    do {                                                                                              \
        unsigned long long check_a_ = (unsigned long long)(a), check_b_ = (unsigned long long)(b);    \
        (void)check_report(check_a_ == check_b_, __FILE__, __LINE__,                                  \
                           "CHECK_EQ_HEX(%s, %s): 0x%llx != 0x%llx", #a, #b, check_a_, check_b_);    \
    } while (0)

#define CHECK_EQ_STR(a, b) ((void)check_str((a), (b), #a, #b, __FILE__, __LINE__))

#define CHECK_MEM_EQ(a, b, len) ((void)check_mem((a), (b), (size_t)(len), #a, #b, __FILE__, __LINE__))

#define REQUIRE(cond)                                                                       \
    do {                                                                                    \
        if (!check_report(!!(cond), __FILE__, __LINE__, "REQUIRE(%s) failed", #cond)) {     \
            check_bail();                                                                   \
        }                                                                                   \
    } while (0)

#define REQUIRE_EQ_INT(a, b)                                                                       \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (!check_report(check_a_ == check_b_, __FILE__, __LINE__,                                \
                          "REQUIRE_EQ_INT(%s, %s): %lld != %lld", #a, #b, check_a_, check_b_)) {  \
            check_bail();                                                                  \
        }                                                                                          \
    } while (0)

#define REQUIRE_EQ_HEX(a, b)                                                                          \
    do {                                                                                              \
        unsigned long long check_a_ = (unsigned long long)(a), check_b_ = (unsigned long long)(b);    \
        if (!check_report(check_a_ == check_b_, __FILE__, __LINE__,                                   \
                          "REQUIRE_EQ_HEX(%s, %s): 0x%llx != 0x%llx", #a, #b, check_a_, check_b_)) { \
            check_bail();                                                                     \
        }                                                                                             \
    } while (0)

#define REQUIRE_MEM_EQ(a, b, len)                                                         \
    do {                                                                                  \
        if (!check_mem((a), (b), (size_t)(len), #a, #b, __FILE__, __LINE__)) {            \
            check_bail();                                                                 \
        }                                                                                 \
    } while (0)

static inline int check_selected(const struct check_test *t, int argc, char **argv)
{
    if (argc <= 1) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], t->name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Keeps setjmp in a frame without locals, so nothing can be clobbered by a REQUIRE's longjmp. */
__attribute__((noinline)) static int check_run_one(void)
{
    check_s_state.current = check_s_state.running->name;
    check_s_state.current_failed = 0;
    if (setjmp(check_s_state.bail) == 0) {
        check_s_state.running->fn();
    }
    fflush(stdout);
    return check_s_state.current_failed;
}

/* Runs the registered tests; argv[1..] optionally names the tests to run. */
static inline int check_run_all(int argc, char **argv)
{
    unsigned run = 0, failed = 0;
    for (struct check_test *t = check_s_state.head; t != NULL; t = t->next) {
        if (!check_selected(t, argc, argv)) {
            continue;
        }
        run++;
        check_s_state.running = t;
        if (check_run_one()) {
            failed++;
        } else {
            fprintf(stderr, "ok   %s\n", t->name);
        }
    }
    fprintf(stderr, "%u test(s), %u failed, %u check(s), %u failure(s)\n", run, failed,
            check_s_state.checks, check_s_state.failures);
    if (run == 0) {
        fprintf(stderr, "no test matched the names given on the command line\n");
        return 2;
    }
    return failed ? 1 : 0;
}

#ifndef CHECK_NO_MAIN
int main(int argc, char **argv)
{
    return check_run_all(argc, argv);
}
#endif

#endif /* CHECK_H */
