/* A program that clears its descriptor table as daemons do, then opens a
 * file and a socket pair that get the lowest numbers back, and keeps
 * allocating. usage: descriptors close|closefrom|close_range|dup2 OUTFILE
 *
 *   close        close(fd) for every fd from 3 to 1023
 *   closefrom    closefrom(3)
 *   close_range  close_range(3, ~0U, 0)
 *   dup2         dup3 of every fd from 3 to 1023 onto itself (EINVAL), then
 *                dup2 of /dev/null onto each of them, then close
 *   vfork        a vfork child does the dup2 of `dup2` in its own table, then
 *                _exits: the parent's descriptors must stay the shim's
 *   raw          close_range(3, ~0U, 0) as a system call, past libc: the one
 *                way left to close the shim's descriptors (the stream is cut)
 *
 * What each call returned goes to OUTFILE, which must read the same with
 * and without the shim (the shim's own descriptors must look closed).
 * Blocks: 100 of 100 B kept across the clearing, then 1000 malloc/free
 * pairs of 32..95 B, then 50 of the 100 freed: 50 live, 5000 B. */
#include "tally.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    void *keep[100];
    for (int i = 0; i < 100; i++)
        keep[i] = t_malloc(100);
    const char *how = argv[1];
    int ok = 0, failed = 0;
    if (!strcmp(how, "close")) {
        for (int fd = 3; fd < 1024; fd++)
            close(fd) == 0 ? ok++ : failed++;
    } else if (!strcmp(how, "closefrom")) {
        closefrom(3);
    } else if (!strcmp(how, "close_range")) {
        close_range(3, ~0U, 0) == 0 ? ok++ : failed++;
    } else if (!strcmp(how, "vfork")) {
        int null = open("/dev/null", O_WRONLY);
        pid_t child = vfork();
        if (child == 0) {
            for (int fd = 3; fd < 1024; fd++)
                if (fd != null)
                    dup2(null, fd);
            _exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0) == child && status == 0 ? ok++ : failed++;
        close(null);
    } else if (!strcmp(how, "raw")) {
        syscall(SYS_close_range, 3, ~0U, 0) == 0 ? ok++ : failed++;
    } else if (!strcmp(how, "dup2")) {
        /* dup3 onto itself is EINVAL whether the number is open or not. */
        for (int fd = 3; fd < 1024; fd++)
            if (dup3(fd, fd, 0) != -1 || errno != EINVAL)
                failed++;
        int null = open("/dev/null", O_WRONLY);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != null)
                dup2(null, fd) == fd ? ok++ : failed++;
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    } else {
        return 2;
    }
    /* The lowest free numbers: where the shim's descriptors were. */
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int pair[2];
    if (out < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
        return 3;
    for (int i = 0; i < 1000; i++)
        t_free(t_malloc(32 + i % 64), 32 + i % 64);
    char said[8] = {0};
    if (write(pair[0], "ping", 4) != 4 || read(pair[1], said, 4) != 4)
        return 4;
    char line[160]; /* snprintf, not dprintf: dprintf allocates a buffer */
    int n = snprintf(line, sizeof line, "%s: %d ok, %d failed; fds %d %d %d; the socket said %s\n",
                     how, ok, failed, out, pair[0], pair[1], said);
    if (write(out, line, n) != n)
        return 5;
    for (int i = 0; i < 50; i++)
        t_free(keep[i], 100);
    tally_print("descriptors");
    return 0;
}
