/* dlopen argv[1], call plugin_entry (which allocates 54321+n bytes that stay
 * live), dlclose it, then exit. The library stays loaded for 50 ms: the shim
 * announces new modules from a watcher thread that looks every 10 ms, so a
 * library loaded and unloaded faster than that is never announced (its
 * frames are then reported as ??, never misnamed). */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    void *(*entry)(int) = (void *(*)(int))dlsym(lib, "plugin_entry");
    void *p = entry ? entry(1) : NULL;
    usleep(50 * 1000);
    if (dlclose(lib) != 0)
        return 4;
    printf("%d\n", p != NULL);
    return 0;
}
