/* posix_spawn (a vfork-style clone + exec in glibc) of argv[1]: the parent
 * allocates before and after, leaks 7 x 640 bytes, and waits for the child,
 * which is another tally program with its own line. */
#include "tally.h"
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;
static volatile int seven = 7;

__attribute__((noinline, noclone)) static void leak_before_spawn(void)
{
    for (int i = 0; i < seven; i++)
        tally_escape(t_malloc(640));
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    void *tmp = t_calloc(30, 30);
    leak_before_spawn();
    pid_t pid;
    char *child_argv[] = {argv[1], NULL};
    if (posix_spawn(&pid, argv[1], NULL, NULL, child_argv, environ) != 0)
        return 1;
    void *after = t_malloc(5000);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;
    t_free(after, 5000);
    t_free(tmp, 900);
    tally_print("spawn");
    return 0;
}
