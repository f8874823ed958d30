/*
 * uart-bridge: the virtual board's USB-UART bridge chip.
 *
 * Opens a pseudo-terminal, prints the path of its slave side (/dev/pts/N) on stdout, then
 * copies everything that arrives on stdin to the terminal, so a reader that opens the slave
 * path with serialport sees the device's console exactly as it would see /dev/ttyUSB0.
 *
 * Like a real UART, bytes nobody reads are lost: while no reader holds the port (the master
 * reports a hangup once every slave handle is closed) output is dropped, so a reader that
 * opens later starts from fresh output. While a reader holds it, a full buffer waits for the
 * reader to catch up instead of dropping, as a USB serial driver keeps what it received.
 * The slave is opened once at start to put it in raw mode (a UART has no line editing or
 * echo); the mode stays with the terminal between readers. After each chunk it prints the
 * number of bytes it dealt with, one per line, so the rig knows when the pipe is empty. The
 * bridge exits when stdin closes (the rig shut the board down).
 */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static int prv_open_pty(char **slave_path)
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
    /* Opening and closing the slave once also puts the master in the hung-up state that
     * means "no reader" until one opens the port. */
    int slave = open(name, O_RDWR | O_NOCTTY);
    if (slave < 0) {
        perror("uart-bridge: cannot open the slave side");
        return -1;
    }
    struct termios tio;
    if (tcgetattr(slave, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(slave, TCSANOW, &tio);
    }
    close(slave);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    return master;
}

static bool prv_reader_present(int master)
{
    struct pollfd p = {.fd = master, .events = POLLOUT};
    return poll(&p, 1, 0) >= 0 && (p.revents & POLLHUP) == 0;
}

int main(void)
{
    char *slave_path = NULL;
    int master = prv_open_pty(&slave_path);
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
        while (off < n && prv_reader_present(master)) {
            ssize_t w = write(master, buf + off, (size_t)(n - off));
            if (w > 0) {
                off += w;
                continue;
            }
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                break;
            }
            /* Full: the reader is behind. Wait for room, or for the reader to go away. */
            struct pollfd p = {.fd = master, .events = POLLOUT};
            poll(&p, 1, 100);
        }
        /* Tell the rig how many bytes are dealt with (delivered or dropped), so it can wait
         * until output from before a power cycle is out of the pipe. */
        printf("%zd\n", n);
        fflush(stdout);
    }
    return 0;
}
