//! A bounded lock-free queue whose memory is backed only as it is used.
//!
//! The queues between the program's threads and the sender hold up to 16,384
//! events (1 MiB) so that the sender can sleep between rounds. crossbeam's
//! `ArrayQueue` gives every slot its initial stamp when the queue is made:
//! every page of that megabyte is touched before `main`, 256 page faults
//! (half a millisecond) in every profiled process, most of which never queue
//! that many events. This is the same algorithm (Dmitry Vyukov's bounded
//! MPMC queue, as crossbeam implements it) with each slot's stamp stored
//! relative to the slot's index, so that a zeroed slot is an empty one: the
//! ring lives in a fresh anonymous mapping and a page is backed when the
//! ring first reaches it. No crate offers a queue over lazily backed memory.
//!
//! The shim's queues have many producers but one consumer at a time (the
//! holder of the stream's writer), so taking a value is a plain load and
//! store of the head, not the compare-and-swap of an MPMC queue: a third of
//! the sender's time per event in the allocation microbenchmark.
//!
//! The first access to each page is a write (see [`crate::first_touch`] for
//! why a read first costs a TLB shootdown): producers claim a slot of the
//! first lap with an atomic compare-and-swap, and the consumer does not look
//! at a slot no producer has claimed yet.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

/// One slot: its stamp, relative to its index, and the value it may hold.
///
/// A slot at index `i` whose stamp reads `s` has the absolute stamp `s + i`:
/// equal to a position `p` (with `p % capacity == i`) when a producer may
/// write it at `p`, to `p + 1` when it holds the value pushed at `p`.
#[repr(C)]
struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded FIFO queue of `Copy` values: many producers, one consumer at a
/// time.
///
/// `Copy`, so that values left in the ring when it is dropped need no drop.
pub struct Ring<T: Copy> {
    /// Position of the next pop.
    head: CachePadded<AtomicUsize>,
    /// Position of the next push.
    tail: CachePadded<AtomicUsize>,
    slots: *mut Slot<T>,
    capacity: usize,
}

// SAFETY: values move between threads only through slots whose stamps hand
// them over (release on write, acquire on read), as in crossbeam's queue.
unsafe impl<T: Copy + Send> Sync for Ring<T> {}
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// An empty ring of `capacity` slots (a power of two) in a fresh
    /// mapping; `None` if it cannot be mapped. Touches none of its pages.
    pub fn new(capacity: usize) -> Option<Ring<T>> {
        assert!(
            capacity.is_power_of_two(),
            "capacity must be a power of two"
        );
        // SAFETY: an anonymous private mapping with no address hint; its
        // pages read as zero, which is an empty slot.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::bytes(capacity),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots: p.cast(),
            capacity,
        })
    }

    fn bytes(capacity: usize) -> usize {
        capacity * std::mem::size_of::<Slot<T>>()
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> (&Slot<T>, usize) {
        let index = pos & (self.capacity - 1);
        // SAFETY: `index` < capacity, inside the mapping.
        (unsafe { &*self.slots.add(index) }, index)
    }

    /// Adds `value` at the back, or gives it back if the ring is full.
    #[inline(always)]
    pub fn push(&self, value: T) -> Result<(), T> {
        let backoff = Backoff::new();
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let (slot, index) = self.slot(pos);
            let relative = if pos < self.capacity {
                // First lap: the page may be new, so write first. A
                // compare-and-swap of 0 with 0 changes nothing and reads
                // the stamp (an x86 `cmpxchg` writes even when it fails).
                match slot
                    .stamp
                    .compare_exchange(0, 0, Ordering::Acquire, Ordering::Acquire)
                {
                    Ok(s) | Err(s) => s,
                }
            } else {
                slot.stamp.load(Ordering::Acquire)
            };
            let stamp = relative.wrapping_add(index);
            if stamp == pos {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the tail at `pos` gives this thread
                        // the slot until it publishes the new stamp.
                        unsafe { (*slot.value.get()).write(value) };
                        slot.stamp
                            .store(pos.wrapping_add(1).wrapping_sub(index), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => {
                        pos = now;
                        backoff.spin();
                    }
                }
            } else if (stamp.wrapping_sub(pos) as isize) < 0 {
                // The slot still holds the value of the previous lap.
                std::sync::atomic::fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.capacity) == pos {
                    return Err(value);
                }
                backoff.spin();
                pos = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer took `pos`: try the tail as it is now.
                backoff.snooze();
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the value at the front, if any.
    ///
    /// # Safety
    ///
    /// No other thread may pop at the same time: the ring has many
    /// producers but one consumer at a time (the holder of the stream's
    /// writer), so taking a value needs no atomic read-modify-write.
    /// Consumers that follow one another must be ordered by a
    /// release/acquire pair (as handing the writer over is).
    #[inline]
    pub unsafe fn pop(&self) -> Option<T> {
        let pos = self.head.load(Ordering::Relaxed);
        // In the first lap, a slot no producer claimed may lie on a page
        // nobody wrote yet: it is not read before the tail passes it.
        if pos < self.capacity && self.tail.load(Ordering::Acquire) == pos {
            return None;
        }
        let (slot, index) = self.slot(pos);
        let backoff = Backoff::new();
        while slot.stamp.load(Ordering::Acquire).wrapping_add(index) != pos.wrapping_add(1) {
            // Not written yet: empty, unless a producer is mid-push, whose
            // value comes next (wait for it, as crossbeam's queue does).
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.tail.load(Ordering::Relaxed) == pos {
                return None;
            }
            backoff.snooze();
        }
        // SAFETY: the stamp says a producer wrote the slot at `pos`, and
        // this thread is the only consumer.
        let value = unsafe { (*slot.value.get()).assume_init_read() };
        slot.stamp.store(
            pos.wrapping_add(self.capacity).wrapping_sub(index),
            Ordering::Release,
        );
        self.head.store(pos.wrapping_add(1), Ordering::Release);
        Some(value)
    }

    /// Number of values in the ring (a snapshot).
    pub fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return tail.wrapping_sub(head).min(self.capacity);
            }
        }
    }

    /// Whether the ring holds no value (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T: Copy> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made by `new`, which nothing
        // references any more.
        unsafe { libc::munmap(self.slots.cast(), Self::bytes(self.capacity)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::first_touch::thread_minor_faults;

    /// Pops from the one consuming thread of a test.
    fn pop<T: Copy>(ring: &Ring<T>) -> Option<T> {
        // SAFETY: these tests pop from a single thread.
        unsafe { ring.pop() }
    }

    #[test]
    fn values_come_out_in_order_over_many_laps() {
        let ring = Ring::<u64>::new(8).unwrap();
        let mut next_out = 0;
        for i in 0..100u64 {
            ring.push(i).unwrap();
            if i % 3 == 2 {
                assert_eq!(pop(&ring), Some(next_out));
                next_out += 1;
            }
            if ring.len() == 8 {
                assert_eq!(ring.push(999), Err(999), "full");
                while let Some(v) = pop(&ring) {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            }
        }
        while let Some(v) = pop(&ring) {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, 100);
        assert!(ring.is_empty());
        assert_eq!(pop(&ring), None);
    }

    #[test]
    fn a_new_ring_touches_no_page_and_each_page_faults_once() {
        // 16,384 slots of 64 bytes: 256 pages.
        let before = thread_minor_faults();
        let ring = Ring::<[u64; 7]>::new(1 << 14).unwrap();
        assert!(
            thread_minor_faults() - before <= 1,
            "creating the ring faulted"
        );
        // Half the ring, popped as it goes (the consumer looks at the slot
        // after the last one pushed): 128 pages, one write fault each, not
        // a read fault and then a write fault.
        let before = thread_minor_faults();
        for i in 0..(1u64 << 13) {
            ring.push([i; 7]).unwrap();
            assert_eq!(pop(&ring), Some([i; 7]));
            assert_eq!(pop(&ring), None);
        }
        let faults = thread_minor_faults() - before;
        assert!(faults <= 128 + 10, "{faults} faults for 128 new pages");
    }

    #[test]
    fn concurrent_producers_lose_and_repeat_nothing() {
        const PRODUCERS: u64 = 3;
        const EACH: u64 = 200_000;
        let ring = Ring::<(u64, u64)>::new(64).unwrap();
        let taken: Vec<Vec<(u64, u64)>> = std::thread::scope(|scope| {
            for p in 0..PRODUCERS {
                let ring = &ring;
                scope.spawn(move || {
                    for i in 0..EACH {
                        let mut v = (p, i);
                        while let Err(back) = ring.push(v) {
                            v = back;
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            // One consumer at a time: the first takes half, then hands
            // over to a second (joining orders them, as handing over the
            // writer does).
            let mut taken = Vec::new();
            for _ in 0..2 {
                let ring = &ring;
                let consumer = scope.spawn(move || {
                    let mut got = Vec::new();
                    while got.len() < (PRODUCERS * EACH / 2) as usize {
                        // SAFETY: one consumer at a time.
                        match unsafe { ring.pop() } {
                            Some(v) => got.push(v),
                            None => std::hint::spin_loop(),
                        }
                    }
                    got
                });
                taken.push(consumer.join().unwrap());
            }
            taken
        });
        // Each producer's values come out in order, every value exactly once.
        let mut last = vec![None; PRODUCERS as usize];
        for &(p, i) in taken.iter().flatten() {
            assert!(last[p as usize] < Some(i), "out of order");
            last[p as usize] = Some(i);
        }
        let mut all: Vec<(u64, u64)> = taken.concat();
        all.sort_unstable();
        let expected: Vec<(u64, u64)> = (0..PRODUCERS)
            .flat_map(|p| (0..EACH).map(move |i| (p, i)))
            .collect();
        assert!(all == expected, "values lost or repeated");
        assert!(ring.is_empty());
    }
}
