//! Memoized unwinding: the outer part of a thread's stack, reused.
//!
//! A program allocates again and again below the same long-lived frames
//! (`main`, an event loop, a request handler). Unwinding those frames each
//! time costs most of a stack capture, and gives the same answer whenever
//! its inputs are the same. Those inputs are few and known: the registers at
//! a frame (framehop tracks `ip`, `sp` and `bp` on x86-64), the module set
//! (the snapshot's generation) and the stack words the unwind rules read,
//! which the capture logs through its `read_stack` callback.
//!
//! So each thread remembers its previous unwind: the state at every frame and
//! every word read (with its value). A new capture unwinds its innermost
//! frames; as soon as it reaches a state identical to a remembered frame's,
//! and every word the remembered unwind read from there outwards still holds
//! the same value, the rest of the stack is copied instead of unwound. That
//! is sound by construction (same inputs, same deterministic rules), not a
//! heuristic: a changed word anywhere outside means a fresh unwind.
//!
//! Two records per thread alternate: the previous one is read while the new
//! one is written.

use super::MAX_STEPS;

/// Most stack words one unwind may read (a rule reads at most two per frame:
/// the return address and a saved frame pointer).
const MAX_READS: usize = 2 * MAX_STEPS;

/// The unwinder's state at one frame.
#[derive(Clone, Copy)]
pub struct Step {
    /// Instruction pointer (the first frame) or return address (the others).
    pub ip: u64,
    /// Stack pointer at this frame.
    pub sp: u64,
    /// Frame-pointer register as the unwinder knows it at this frame.
    pub bp: u64,
    /// Reads logged up to the end of unwinding this frame (cumulative).
    pub reads_end: u32,
}

/// One recorded unwind of a thread's stack.
pub struct Record {
    /// Generation of the module snapshot it was made with (0, which no
    /// snapshot has: unusable).
    pub generation: u64,
    /// Whether it reached the end of the stack (else it stopped at the
    /// depth limit, at the step limit, or at an error: its last step was
    /// not unwound).
    pub complete: bool,
    /// Recorded frames.
    pub len: usize,
    /// The state at each frame, innermost first.
    pub steps: [Step; MAX_STEPS],
    /// Logged stack reads: (address, value).
    pub reads: [(u64, u64); MAX_READS],
    /// How many of `reads` are valid.
    pub reads_len: usize,
}

impl Record {
    /// Starts an empty record for the snapshot `generation`.
    pub fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.complete = false;
        self.len = 0;
        self.reads_len = 0;
    }

    /// Logs a read; an overflowing log makes the record unusable.
    #[inline(always)]
    pub fn log_read(&mut self, addr: u64, value: u64) {
        if self.reads_len < MAX_READS {
            self.reads[self.reads_len] = (addr, value);
            self.reads_len += 1;
        } else {
            self.generation = 0;
        }
    }

    /// Appends the state of the next frame.
    #[inline(always)]
    pub fn push_step(&mut self, ip: u64, sp: u64, bp: u64) {
        self.steps[self.len] = Step {
            ip,
            sp,
            bp,
            reads_end: self.reads_len as u32,
        };
        self.len += 1;
    }

    /// Marks the end of unwinding the last frame (its reads are logged).
    #[inline(always)]
    pub fn end_step(&mut self) {
        if let Some(last) = self.steps[..self.len].last_mut() {
            last.reads_end = self.reads_len as u32;
        }
    }

    /// The index of a remembered return-address frame in exactly this state,
    /// searched from `*cursor` on (states are ordered by `sp`), whose outer
    /// reads all still hold (`read` gives the current word, or `None` out of
    /// bounds). Moves `*cursor` past frames below `sp`.
    pub fn reusable_from(
        &self,
        generation: u64,
        state: (u64, u64, u64),
        cursor: &mut usize,
        read: impl Fn(u64) -> Option<u64>,
    ) -> Option<usize> {
        if self.generation != generation {
            return None;
        }
        let (ip, sp, bp) = state;
        // Frame 0 is the capture's own instruction pointer, never a match.
        *cursor = (*cursor).max(1);
        while *cursor < self.len && self.steps[*cursor].sp < sp {
            *cursor += 1;
        }
        let j = *cursor;
        let s = self.steps.get(j).filter(|_| j < self.len)?;
        if (s.ip, s.sp, s.bp) != (ip, sp, bp) {
            return None;
        }
        let from = self.steps[j - 1].reads_end as usize;
        let valid = self.reads[from..self.reads_len]
            .iter()
            .all(|&(addr, value)| read(addr) == Some(value));
        valid.then_some(j)
    }

    /// Appends `other`'s frames from `j` on (and their reads) to this record,
    /// which must hold exactly the frames before the matching state.
    pub fn splice(&mut self, other: &Record, j: usize) {
        let from = other.steps[j - 1].reads_end as usize;
        let reads = other.reads_len - from;
        if self.reads_len + reads > MAX_READS || self.len + (other.len - j) > MAX_STEPS {
            self.generation = 0;
            return;
        }
        let shift = self.reads_len as i64 - from as i64;
        self.reads[self.reads_len..self.reads_len + reads]
            .copy_from_slice(&other.reads[from..other.reads_len]);
        self.reads_len += reads;
        for (k, s) in other.steps[j..other.len].iter().enumerate() {
            self.steps[self.len + k] = Step {
                reads_end: (i64::from(s.reads_end) + shift) as u32,
                ..*s
            };
        }
        self.len += other.len - j;
        self.complete = other.complete;
    }
}

/// A thread's two records: the previous unwind and the one being made.
pub struct Memo {
    records: [Record; 2],
    previous: usize,
}

impl Memo {
    /// Two empty records, on the heap (they are about 20 KiB).
    pub fn new_boxed() -> Box<Memo> {
        // SAFETY: every field is an integer, a bool or an array of them, for
        // which all-zero bytes are valid (generation 0: unusable).
        unsafe { Box::new_zeroed().assume_init() }
    }

    /// (previous record, record to write), after which the roles swap.
    pub fn begin(&mut self) -> (&Record, &mut Record) {
        let [a, b] = &mut self.records;
        let pair = if self.previous == 0 {
            (&*a, b)
        } else {
            (&*b, a)
        };
        self.previous ^= 1;
        pair
    }
}
