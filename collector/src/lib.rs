//! memcollect: receives memshim event streams, rebuilds each process's heap,
//! symbolizes the interesting stacks and reports.

pub mod state;
