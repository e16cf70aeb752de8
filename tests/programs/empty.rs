// Baseline: what the Rust runtime allocates by itself.
fn main() {}
