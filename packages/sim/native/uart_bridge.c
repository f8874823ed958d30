/*
 * uart-bridge: the virtual board's USB-UART bridge chip.
 *
 * Opens a pseudo-terminal, prints the path of its slave side (/dev/pts/N) on stdout, then
 * copies everything that arrives on stdin to the terminal, so a reader that opens the slave
 * path with serialport sees the device's console exactly as it would see /dev/ttyUSB0.
 *
 * Like a real UART, bytes nobody reads are lost: the master is non-blocking and a full line
 * discipline buffer drops output instead of stalling the simulated device. The bridge keeps
 * its own (never read) handle on the slave so the terminal and its raw mode survive readers
 * that come and go; like any serial port, up to one buffer of older output can be waiting
 * when a reader opens it, so readers flush on open. It exits when stdin closes (the rig shut
 * the board down).
 */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static int prv_open_pty(char **slave_path, int *slave_fd)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("uart-bridge: cannot open a pseudo-terminal");
        return -1;
    }
    char *name = ptsname(master);
    if (name == NULL) {
        perror("uart-bridge: ptsname");
        return -1;
    }
    *slave_path = strdup(name);
    *slave_fd = open(name, O_RDWR | O_NOCTTY);
    if (*slave_fd < 0) {
        perror("uart-bridge: cannot open the slave side");
        return -1;
    }
    /* A UART has no line editing or echo: raw until a reader sets its own mode. */
    struct termios tio;
    if (tcgetattr(*slave_fd, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(*slave_fd, TCSANOW, &tio);
    }
    int flags = fcntl(master, F_GETFL);
    fcntl(master, F_SETFL, flags | O_NONBLOCK);
    return master;
}

int main(void)
{
    char *slave_path = NULL;
    int slave_fd = -1;
    int master = prv_open_pty(&slave_path, &slave_fd);
    if (master < 0) {
        return 1;
    }
    printf("%s\n", slave_path);
    fflush(stdout);

    char buf[4096];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("uart-bridge: stdin");
            return 1;
        }
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(master, buf + off, (size_t)(n - off));
            if (w > 0) {
                off += w;
                continue;
            }
            if (w < 0 && errno == EINTR) {
                continue;
            }
            /* Buffer full. If no reader holds the port the bytes are gone, as on a real UART;
             * if one does, give it a moment to catch up before dropping. */
            struct pollfd p = {.fd = master, .events = POLLOUT};
            if (poll(&p, 1, 20) <= 0) {
                break;
            }
        }
    }
    close(slave_fd);
    return 0;
}
