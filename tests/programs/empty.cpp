// Baseline: what the C++ runtime allocates by itself (libstdc++'s emergency
// exception pool). Linked with --no-as-needed so libstdc++ is loaded.
#include "tally.h"

int main()
{
    tally_print("empty_cpp");
    return 0;
}
