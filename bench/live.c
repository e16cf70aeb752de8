/* For `make bench`: one million small blocks live at exit (collector memory
 * per live block), allocated from a handful of sites. */
#include <stdlib.h>
int main(void) {
    static void *keep[1000000];
    for (int i = 0; i < 1000000; i++)
        keep[i] = malloc(16 + (i % 4) * 16);
    return keep[0] == NULL;
}
