/* fork: the child inherits 5 blocks of 1000 bytes, frees 2 of them, does its
 * own churn and leaks 3 x 777 bytes; the parent waits for it, frees 1 of the
 * inherited blocks and leaks 2 x 5555 bytes. Each prints its own tally line.
 * With the argument `_exit`, both end with _exit(0) (no handlers run). */
#include "tally.h"
#include <string.h>
#include <sys/wait.h>

/* Loop counts read through a volatile so that the compiler cannot unroll the
 * leaking loops: each leak must be ONE call site (one stack). */
static volatile int three = 3, two = 2;

__attribute__((noinline, noclone)) static void leak_n(int n, size_t size)
{
    for (int i = 0; i < n; i++)
        tally_escape(t_malloc(size));
}

static void churn(size_t base)
{
    for (int i = 0; i < 100; i++) {
        void *p = t_malloc(base + (size_t)i);
        t_free(p, base + (size_t)i);
    }
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "_exit") == 0;
    void *inherited[5];
    churn(10);
    for (int i = 0; i < 5; i++)
        inherited[i] = t_malloc(1000);

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        tally_fork_child();
        t_free(inherited[0], 1000);
        t_free(inherited[3], 1000);
        churn(200);
        leak_n(three, 777);
        tally_print("fork_child");
        if (quick)
            _exit(0);
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed: status %d\n", status);
        return 1;
    }
    t_free(inherited[4], 1000);
    churn(500);
    leak_n(two, 5555);
    tally_print("fork_parent");
    if (quick)
        _exit(0);
    return 0;
}
