/* dlopen argv[1], call plugin_entry (which allocates 54321+n bytes that stay
 * live), dlclose it at once, then exit. The library must still be named: the
 * shim announces a new module before the first stack that runs through it,
 * and looks again before every dlclose. */
#include <dlfcn.h>
#include <stdio.h>

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
    if (dlclose(lib) != 0)
        return 4;
    printf("%d\n", p != NULL);
    return 0;
}
