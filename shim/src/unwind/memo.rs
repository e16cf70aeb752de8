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
//! the words read (with their values). A new capture unwinds its innermost
//! frames; as soon as it reaches a state identical to a remembered frame's,
//! and every word the remembered unwind depended on from there outwards
//! still holds the same value, the rest of the stack is copied instead of
//! unwound. That is sound by construction (same inputs, same deterministic
//! rules), not a heuristic: a changed input anywhere outside means a fresh
//! unwind.
//!
//! Not every word a rule reads is an input of the result, and checking
//! those that are not would defeat the memo: a function that saves `rbx` or
//! `rbp` keeps its caller's values of them on the stack, and in code built
//! without frame pointers those are loop counters and pointers that change
//! with every call. framehop's x86-64 rules carry only `ip`, `sp` and `bp`
//! from frame to frame, so a word matters only if it becomes the next
//! return address or the next `bp`:
//!
//! * a read whose value is neither is dropped from the log (the saved `rbx`,
//!   `r12`..`r15`); whether it can be read at all depends only on its
//!   address, which the matching state fixes;
//! * `bp` itself matters only while it is *live*: some later rule computes a
//!   frame from it (frame-pointer rules, `CFA = rbp + k`) before a rule
//!   restores it from the stack. So a frame's `bp`, and a word that restored
//!   `bp`, are compared only where `bp` is live. A step is taken to use `bp`
//!   when its caller's stack pointer lies within 4 GiB of it, which every
//!   rule deriving the CFA from `rbp` gives (a successful step's CFA is on
//!   the stack, `rbp + k` for its rule's small `k`); a step that ended the
//!   stack, or was not taken, counts as using it. Both tests err on the side
//!   of comparing more.
//!
//! Which of those words matter depends only on the frames outside each
//! step, so a record works it out once ([`Record::finish`]) and every later
//! check is one pass over its reads.
//!
//! Two records per thread alternate: the previous one is read while the new
//! one is written. A capture whose whole stack is unchanged, from its own
//! frame outwards (a loop allocating from one place, the common case),
//! matches the previous record at frame 0 and keeps it as it is: no
//! unwinding step and no copy.

use super::MAX_STEPS;

/// Most stack words one unwind may log (a rule's kept reads per frame: the
/// return address and a saved frame pointer).
const MAX_READS: usize = 2 * MAX_STEPS;

/// A logged read that is an input of the result whatever else holds: the
/// next return address, or any read of a step that ended the stack.
const READ_ALWAYS: u8 = 0;
/// A logged read that restored `bp`: an input only while `bp` is live after
/// its step.
const READ_BP: u8 = 1;
/// A logged read that restored `bp` where `bp` is dead after its step: not
/// an input ([`Record::finish`] finds them).
const READ_DEAD: u8 = 2;

/// How close (in bytes) a caller's stack pointer must be to a frame's `bp`
/// for the step to be taken as having used `bp`.
const BP_USE_DISTANCE: u64 = 1 << 32;

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
    /// Whether `bp` is live on entry to this frame's step, i.e. an input of
    /// the unwind from here outwards (set by [`Record::finish`]).
    pub bp_live: bool,
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
    /// What each logged read is an input of (`READ_ALWAYS`, `READ_BP`,
    /// `READ_DEAD`).
    pub kinds: [u8; MAX_READS],
    /// How many of `reads` are valid.
    pub reads_len: usize,
    /// Whether `bp` liveness is known for every step ([`Record::finish`]).
    pub finished: bool,
    /// Where the steps copied from a finished record begin (their liveness
    /// is known already), or `usize::MAX` if none were.
    pub spliced_at: usize,
}

impl Record {
    /// Starts an empty record for the snapshot `generation`.
    pub fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.complete = false;
        self.len = 0;
        self.reads_len = 0;
        self.finished = false;
        self.spliced_at = usize::MAX;
    }

    /// Logs a read; an overflowing log makes the record unusable.
    #[inline(always)]
    pub fn log_read(&mut self, addr: u64, value: u64) {
        if self.reads_len < MAX_READS {
            self.reads[self.reads_len] = (addr, value);
            self.kinds[self.reads_len] = READ_ALWAYS;
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
            bp_live: true,
        };
        self.len += 1;
    }

    /// Marks the end of unwinding the last frame, whose caller has `next`
    /// as its return address and `bp` (`None`: the step ended the stack, and
    /// all its reads stay inputs). Keeps only the reads that are inputs.
    #[inline(always)]
    pub fn end_step(&mut self, next: Option<(u64, u64)>) {
        let Some(last) = self.len.checked_sub(1) else {
            return;
        };
        if let Some((ip, bp)) = next {
            let start = self.steps[last].reads_end as usize;
            let mut kept = start;
            for k in start..self.reads_len {
                let (addr, value) = self.reads[k];
                let kind = if value == ip {
                    READ_ALWAYS
                } else if value == bp {
                    READ_BP
                } else {
                    continue;
                };
                self.reads[kept] = (addr, value);
                self.kinds[kept] = kind;
                kept += 1;
            }
            self.reads_len = kept;
        }
        self.steps[last].reads_end = self.reads_len as u32;
    }

    /// Whether step `s`, with `bp_live_after` telling whether `bp` is live
    /// after it, leaves `bp` live before it: it uses `bp`, or passes it on
    /// unchanged to a step that does.
    fn bp_live_before(&self, s: usize, bp_live_after: bool) -> bool {
        let Some(next) = self.steps[..self.len].get(s + 1) else {
            return true;
        };
        let here = &self.steps[s];
        let uses = next.sp.abs_diff(here.bp) < BP_USE_DISTANCE;
        uses || (next.bp == here.bp && bp_live_after)
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
        // Frame 0 is the capture's own instruction pointer: see `reusable_whole`.
        *cursor = (*cursor).max(1);
        while *cursor < self.len && self.steps[*cursor].sp < sp {
            *cursor += 1;
        }
        let j = *cursor;
        let s = self.steps.get(j).filter(|_| j < self.len)?;
        if (s.ip, s.sp) != (ip, sp) {
            return None;
        }
        self.holds_from(j, bp, read).then_some(j)
    }

    /// Whether the whole record is the unwind of a capture starting in this
    /// state (its frame 0: the capture's own instruction pointer, stack and
    /// frame pointer), every read still holding: the stack has not changed
    /// since, from the capture's frame outwards, and the record can stand
    /// for the new unwind as it is.
    pub fn reusable_whole(
        &self,
        generation: u64,
        state: (u64, u64, u64),
        read: impl Fn(u64) -> Option<u64>,
    ) -> bool {
        let (ip, sp, bp) = state;
        self.generation == generation
            && self.len > 0
            && (self.steps[0].ip, self.steps[0].sp) == (ip, sp)
            && self.holds_from(0, bp, read)
    }

    /// Where the reads logged while unwinding frame `k` begin.
    fn reads_start(&self, k: usize) -> usize {
        k.checked_sub(1)
            .map_or(0, |p| self.steps[p].reads_end as usize)
    }

    /// Whether the unwind from frame `j` on, entered with frame pointer
    /// `bp`, still holds: every read that is an input still has its value,
    /// and so does `bp` if it is live there. On a record not yet finished
    /// every `bp` counts as live: stricter, never wrong.
    fn holds_from(&self, j: usize, bp: u64, read: impl Fn(u64) -> Option<u64>) -> bool {
        let from = self.reads_start(j);
        (!self.steps[j].bp_live || self.steps[j].bp == bp)
            && self.reads[from..self.reads_len]
                .iter()
                .zip(&self.kinds[from..self.reads_len])
                .all(|(&(addr, value), &kind)| kind == READ_DEAD || read(addr) == Some(value))
    }

    /// Works out, outermost frame first, where `bp` is live, and marks the
    /// reads that restored a dead `bp` as no inputs: once per record, so
    /// that every later check is a single pass. Frames spliced from a
    /// finished record are known already (liveness after a step depends
    /// only on the steps outside it): only the frames unwound afresh are
    /// worked out, which halved this work in `git log -p`.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        let known = self.spliced_at.min(self.len);
        let mut bp_live = self.steps[..self.len].get(known).is_none_or(|s| s.bp_live);
        for k in (0..known).rev() {
            for r in self.reads_start(k)..self.steps[k].reads_end as usize {
                if self.kinds[r] != READ_ALWAYS {
                    self.kinds[r] = if bp_live { READ_BP } else { READ_DEAD };
                }
            }
            bp_live = self.bp_live_before(k, bp_live);
            self.steps[k].bp_live = bp_live;
        }
        self.finished = true;
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
        if other.finished {
            self.spliced_at = self.len;
        }
        let shift = self.reads_len as i64 - from as i64;
        self.reads[self.reads_len..self.reads_len + reads]
            .copy_from_slice(&other.reads[from..other.reads_len]);
        self.kinds[self.reads_len..self.reads_len + reads]
            .copy_from_slice(&other.kinds[from..other.reads_len]);
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

    /// The previous unwind, as the next [`Memo::begin`] would give it,
    /// finished.
    pub fn previous(&mut self) -> &Record {
        let previous = &mut self.records[self.previous];
        previous.finish();
        previous
    }

    /// (previous record, record to write), after which the roles swap. The
    /// previous record is finished if [`Memo::previous`] was asked for it.
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GEN: u64 = 7;
    /// A stack address: frames live around here.
    const SP: u64 = 0x7ffd_0000_1000;

    /// A three-frame unwind of `stack`, as `capture` would record it. Frame 0
    /// saves `rbx` and `rbp` (restoring the caller's `bp`); frame 1 restores
    /// `bp` again, or (`frame_pointer`) is a frame-pointer function whose CFA
    /// is `bp + 16`; frame 2 ends the stack. Returns the record and the
    /// state a new capture would be in at frame 1.
    fn record(stack: &HashMap<u64, u64>, frame_pointer: bool) -> (Box<Memo>, (u64, u64, u64)) {
        let mut memo = Memo::new_boxed();
        let (_, r) = memo.begin();
        r.reset(GEN);
        let read = |a: u64| stack[&a];
        // Frame 0: pushes rbx, rbp; returns to 0x400100.
        r.push_step(0x400000, SP, 5);
        for a in [SP + 0x08, SP + 0x10, SP + 0x18] {
            r.log_read(a, read(a));
        }
        let bp1 = read(SP + 0x10);
        r.end_step(Some((read(SP + 0x18), bp1)));
        // Frame 1.
        r.push_step(0x400100, SP + 0x20, bp1);
        let bp2 = if frame_pointer {
            r.log_read(bp1, read(bp1));
            r.log_read(bp1 + 8, read(bp1 + 8));
            read(bp1)
        } else {
            r.log_read(SP + 0x20, read(SP + 0x20));
            r.log_read(SP + 0x28, read(SP + 0x28));
            read(SP + 0x20)
        };
        let next_sp = if frame_pointer { bp1 + 16 } else { SP + 0x30 };
        r.end_step(Some((read(next_sp - 8), bp2)));
        // Frame 2: its return address is 0, the end.
        r.push_step(read(next_sp - 8), next_sp, bp2);
        r.log_read(next_sp + 8, read(next_sp + 8));
        r.end_step(None);
        r.complete = true;
        (memo, (0x400100, SP + 0x20, bp1))
    }

    fn stack() -> HashMap<u64, u64> {
        HashMap::from([
            (SP + 0x08, 77),       // frame 0's saved rbx
            (SP + 0x10, 9),        // frame 0's saved rbp: a loop counter
            (SP + 0x18, 0x400100), // return address into frame 1
            (SP + 0x20, 11),       // frame 1's saved rbp
            (SP + 0x28, 0x400200), // return address into frame 2
            (SP + 0x38, 0),        // frame 2's return address: none
        ])
    }

    fn reusable(memo: &mut Memo, stack: &HashMap<u64, u64>, state: (u64, u64, u64)) -> bool {
        let previous = memo.previous();
        let mut cursor = 0;
        previous
            .reusable_from(GEN, state, &mut cursor, |a| stack.get(&a).copied())
            .is_some()
    }

    #[test]
    fn words_that_are_not_inputs_are_not_compared() {
        let mut stack = stack();
        let (mut memo, (ip, sp, _)) = record(&stack, false);
        assert!(reusable(&mut memo, &stack, (ip, sp, 9)), "same stack");
        // Frame 1 restores bp before anything uses it: its bp is dead.
        assert!(reusable(&mut memo, &stack, (ip, sp, 1234)), "other dead bp");
        // A saved rbx is never an input.
        stack.insert(SP + 0x08, 78);
        assert!(reusable(&mut memo, &stack, (ip, sp, 9)), "other saved rbx");
    }

    #[test]
    fn words_that_are_inputs_are_compared() {
        let (mut memo, (ip, sp, bp)) = record(&stack(), false);
        // The bp frame 1 restores is live to the end of the stack.
        let mut stack = stack();
        stack.insert(SP + 0x20, 12);
        assert!(!reusable(&mut memo, &stack, (ip, sp, bp)), "restored bp");
        let mut stack = self::stack();
        stack.insert(SP + 0x28, 0x400300);
        assert!(!reusable(&mut memo, &stack, (ip, sp, bp)), "return address");
        assert!(!reusable(&mut memo, &self::stack(), (ip + 1, sp, bp)), "ip");
    }

    #[test]
    fn a_frame_pointer_is_compared_where_it_is_used() {
        let mut stack = stack();
        // Frame 0's saved rbp is now frame 1's frame pointer.
        let fp = SP + 0x40;
        stack.insert(SP + 0x10, fp);
        stack.insert(fp, 0);
        stack.insert(fp + 8, 0x400200);
        stack.insert(fp + 24, 0);
        let (mut memo, (ip, sp, bp)) = record(&stack, true);
        assert!(reusable(&mut memo, &stack, (ip, sp, bp)), "same stack");
        assert!(!reusable(&mut memo, &stack, (ip, sp, bp + 16)), "other bp");
    }

    #[test]
    fn a_spliced_record_finishes_as_a_fresh_one_would() {
        for frame_pointer in [false, true] {
            let mut stack = stack();
            if frame_pointer {
                let fp = SP + 0x40;
                stack.insert(SP + 0x10, fp);
                stack.insert(fp, 0);
                stack.insert(fp + 8, 0x400200);
                stack.insert(fp + 24, 0);
            }
            let (mut memo, _) = record(&stack, frame_pointer);
            memo.previous();
            let (previous, r) = memo.begin();
            // The same frame 0 unwound afresh, the rest spliced.
            r.reset(GEN);
            r.push_step(0x400000, SP, 5);
            for a in [SP + 0x08, SP + 0x10, SP + 0x18] {
                r.log_read(a, stack[&a]);
            }
            r.end_step(Some((stack[&(SP + 0x18)], stack[&(SP + 0x10)])));
            r.splice(previous, 1);
            assert_eq!(r.spliced_at, 1);
            r.finish();
            let live: Vec<bool> = r.steps[..r.len].iter().map(|s| s.bp_live).collect();
            let kinds = r.kinds[..r.reads_len].to_vec();
            // Worked out again from the outermost frame, as if unwound afresh.
            r.finished = false;
            r.spliced_at = usize::MAX;
            r.finish();
            let again: Vec<bool> = r.steps[..r.len].iter().map(|s| s.bp_live).collect();
            assert_eq!(live, again, "frame pointer {frame_pointer}");
            assert_eq!(
                kinds,
                &r.kinds[..r.reads_len],
                "frame pointer {frame_pointer}"
            );
        }
    }

    #[test]
    fn an_unchanged_stack_is_reused_whole_from_the_capture_frame() {
        let mut stack = stack();
        let (mut memo, _) = record(&stack, false);
        let whole = |memo: &mut Memo, stack: &HashMap<u64, u64>, state| {
            memo.previous()
                .reusable_whole(GEN, state, |a| stack.get(&a).copied())
        };
        // Frame 0's own bp is restored before any use: dead.
        assert!(whole(&mut memo, &stack, (0x400000, SP, 1234)), "same stack");
        assert!(!whole(&mut memo, &stack, (0x400000, SP + 8, 5)), "other sp");
        assert!(!whole(&mut memo, &stack, (0x400004, SP, 5)), "other ip");
        let other_modules = memo
            .previous()
            .reusable_whole(GEN + 1, (0x400000, SP, 5), |a| stack.get(&a).copied());
        assert!(!other_modules, "another module snapshot");
        stack.insert(SP + 0x18, 0x400104);
        assert!(
            !whole(&mut memo, &stack, (0x400000, SP, 5)),
            "return address"
        );
    }
}
