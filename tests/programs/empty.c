/* Baseline: what the C runtime allocates by itself. */
#include "tally.h"

int main(void)
{
    tally_print("empty");
    return 0;
}
