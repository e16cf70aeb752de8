/* Built with -static for the bad-input test: memcollect run must refuse it
 * (LD_PRELOAD cannot reach a static binary). Prints nothing, exits 0. */
int main(void) { return 0; }
