//! Unwind rules in the compact form the capture executes.
//!
//! A row of DWARF call-frame information says, for a range of addresses,
//! how to find the caller's frame: the CFA (canonical frame address) as a
//! register plus an offset, and where the return address and the saved
//! registers are kept relative to it. On x86-64 the unwinder only tracks
//! `ip`, `sp` and `bp` (the rest are not needed to find the callers), and
//! compilers emit a handful of shapes for them: CFA = `rsp + k` with `rbp`
//! saved at CFA + j or not at all, CFA = `rbp + 16` with `rbp` saved at
//! CFA - 16 (frame pointers), and no return address at the outermost
//! frame. [`Rule`] holds exactly those shapes; [`translate`] turns a gimli
//! row into one, or says [`Rule::Framehop`] for anything else (DWARF
//! expressions, a CFA in another register, odd offsets), which the capture
//! then hands to framehop's general evaluator.
//!
//! framehop derives similar rules internally, but does not export them or
//! their execution, so the capture could not keep them beyond framehop's own
//! 509-entry cache; [`Rule::exec`] applies them with framehop's semantics
//! (the same checks, in the same order) so that a frame unwinds the same
//! way whichever path handled it.

use framehop::x86_64::UnwindRegsX86_64;
use gimli::{CfaRule, ReaderOffset, RegisterRule, UnwindContextStorage, UnwindTableRow, X86_64};

/// How to step from a frame to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The return address is undefined: this is the outermost frame.
    EndOfStack,
    /// CFA = `sp + cfa_offset`, return address at CFA - 8; `bp` restored
    /// from CFA + `bp_offset`, or unchanged if `bp_offset` is 0.
    SpOffset { cfa_offset: u32, bp_offset: i16 },
    /// Frame pointers: CFA = `bp + 16`, `bp` restored from CFA - 16.
    FramePointer,
    /// No compact form (or no unwind information): framehop decides.
    Framehop,
}

/// Why a step failed: the stack ends there, as an unreadable stack or
/// garbage unwind information would end it.
#[derive(Debug, PartialEq, Eq)]
pub struct StepError;

/// Translates the row covering an address into a [`Rule`].
pub fn translate<T: ReaderOffset, S: UnwindContextStorage<T>>(row: &UnwindTableRow<T, S>) -> Rule {
    match row.register(X86_64::RA) {
        None | Some(RegisterRule::Undefined) => return Rule::EndOfStack,
        Some(RegisterRule::Offset(-8)) => {}
        Some(_) => return Rule::Framehop,
    }
    // Where `rbp` is saved, relative to the CFA (0: not saved).
    let bp_offset = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined) | Some(RegisterRule::SameValue) => 0,
        Some(RegisterRule::Offset(j)) if j != 0 => match i16::try_from(j) {
            Ok(j) => j,
            Err(_) => return Rule::Framehop,
        },
        Some(_) => return Rule::Framehop,
    };
    match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
            match u32::try_from(offset) {
                Ok(cfa_offset) if cfa_offset >= 8 => Rule::SpOffset {
                    cfa_offset,
                    bp_offset,
                },
                _ => Rule::Framehop,
            }
        }
        CfaRule::RegisterAndOffset { register, offset }
            if register == X86_64::RBP && offset == 16 && bp_offset == -16 =>
        {
            Rule::FramePointer
        }
        _ => Rule::Framehop,
    }
}

impl Rule {
    /// Steps `regs` from a frame to its caller. Returns the caller's return
    /// address, `None` at the end of the stack. `first` says whether this is
    /// the innermost frame (its `ip` is not a return address). Not for
    /// [`Rule::Framehop`], which framehop executes.
    #[inline(always)]
    pub fn exec(
        self,
        first: bool,
        regs: &mut UnwindRegsX86_64,
        read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
    ) -> Result<Option<u64>, StepError> {
        let sp = regs.sp();
        let bp = regs.bp();
        let (new_sp, new_bp) = match self {
            Rule::EndOfStack => return Ok(None),
            Rule::SpOffset {
                cfa_offset,
                bp_offset,
            } => {
                let new_sp = sp.checked_add(u64::from(cfa_offset)).ok_or(StepError)?;
                if bp_offset == 0 {
                    (new_sp, bp)
                } else {
                    let at = new_sp.wrapping_add_signed(i64::from(bp_offset));
                    match read_stack(at) {
                        Ok(value) => (new_sp, value),
                        // In an epilogue the CFI may still name a slot that
                        // was popped already (below `sp`): `bp` holds the
                        // restored value then, as framehop assumes too.
                        Err(()) if first && at < sp => (new_sp, bp),
                        Err(()) => return Err(StepError),
                    }
                }
            }
            Rule::FramePointer => {
                if bp == 0 {
                    return Ok(None);
                }
                let new_sp = bp.checked_add(16).ok_or(StepError)?;
                if new_sp <= sp {
                    return Err(StepError);
                }
                (new_sp, read_stack(bp).map_err(|()| StepError)?)
            }
            Rule::Framehop => return Err(StepError),
        };
        let return_address = read_stack(new_sp - 8).map_err(|()| StepError)?;
        if return_address == 0 {
            return Ok(None);
        }
        if new_sp == sp && return_address == regs.ip() {
            return Err(StepError);
        }
        regs.set_ip(return_address);
        regs.set_sp(new_sp);
        regs.set_bp(new_bp);
        Ok(Some(return_address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of words at addresses 0, 8, 16, ...
    fn reader(stack: &[u64]) -> impl FnMut(u64) -> Result<u64, ()> + '_ {
        |addr| stack.get((addr / 8) as usize).copied().ok_or(())
    }

    #[test]
    fn sp_offset_without_saved_bp_keeps_bp() {
        let stack = [0, 0x1111, 0x2222, 0x3333];
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0x77);
        let rule = Rule::SpOffset {
            cfa_offset: 16,
            bp_offset: 0,
        };
        assert_eq!(
            rule.exec(false, &mut regs, &mut reader(&stack)),
            Ok(Some(0x2222))
        );
        assert_eq!((regs.ip(), regs.sp(), regs.bp()), (0x2222, 0x18, 0x77));
    }

    #[test]
    fn sp_offset_restores_bp_from_its_slot() {
        // CFA = sp + 24 = 32; return address at 24, bp saved at CFA - 16 = 16.
        let stack = [0, 0, 0xb0b0, 0x4444, 0];
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0x77);
        let rule = Rule::SpOffset {
            cfa_offset: 24,
            bp_offset: -16,
        };
        assert_eq!(
            rule.exec(false, &mut regs, &mut reader(&stack)),
            Ok(Some(0x4444))
        );
        assert_eq!((regs.sp(), regs.bp()), (32, 0xb0b0));
    }

    #[test]
    fn a_popped_bp_slot_is_tolerated_in_the_first_frame_only() {
        // bp's slot (CFA - 16 = 0) lies below sp = 8 and cannot be read.
        let stack = [0xdead, 0x4444, 0];
        let read = |addr: u64| {
            if addr < 8 {
                Err(())
            } else {
                reader(&stack)(addr)
            }
        };
        let rule = Rule::SpOffset {
            cfa_offset: 8,
            bp_offset: -16,
        };
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0x77);
        assert_eq!(rule.exec(true, &mut regs, &mut { read }), Ok(Some(0x4444)));
        assert_eq!(regs.bp(), 0x77);
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0x77);
        assert_eq!(rule.exec(false, &mut regs, &mut { read }), Err(StepError));
    }

    #[test]
    fn frame_pointer_follows_the_chain_and_never_goes_back() {
        // bp = 16: saved bp at 16, return address at 24.
        let stack = [0, 0, 0x40, 0x6666, 0];
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 16);
        assert_eq!(
            Rule::FramePointer.exec(false, &mut regs, &mut reader(&stack)),
            Ok(Some(0x6666))
        );
        assert_eq!((regs.sp(), regs.bp()), (32, 0x40));
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x40, 16);
        assert_eq!(
            Rule::FramePointer.exec(false, &mut regs, &mut reader(&stack)),
            Err(StepError)
        );
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0);
        assert_eq!(
            Rule::FramePointer.exec(false, &mut regs, &mut reader(&stack)),
            Ok(None)
        );
    }

    #[test]
    fn zero_return_address_and_end_of_stack_end_the_stack() {
        let stack = [0, 0];
        let rule = Rule::SpOffset {
            cfa_offset: 8,
            bp_offset: 0,
        };
        let mut regs = UnwindRegsX86_64::new(0x5000, 0x8, 0);
        assert_eq!(rule.exec(false, &mut regs, &mut reader(&stack)), Ok(None));
        assert_eq!(
            Rule::EndOfStack.exec(false, &mut regs, &mut reader(&stack)),
            Ok(None)
        );
        assert_eq!(
            Rule::Framehop.exec(false, &mut regs, &mut reader(&stack)),
            Err(StepError)
        );
    }
}
