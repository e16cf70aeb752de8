//! `dlclose`: keeps the unwinder from reading an object that is being unloaded.
//!
//! Before the real call, the unwinder's module set drops every object that
//! could be unloaded and the hook waits until no capture still uses the old
//! set; after it, the set is rebuilt from what is loaded. The guard is held
//! only around that work, not around the real call, so that the library's
//! destructors are recorded as usual. `dlopen` is not hooked: see
//! `unwind::registry` for why.

use std::ffi::{c_int, c_void};

use crate::real;
use crate::thread_state::Guard;
use crate::{announce, errno, unwind};

/// Interposed `dlclose(3)`.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let Some(real_dlclose) = real::get().and_then(|r| r.dlclose) else {
        // Only while the real functions are being resolved: nothing can have
        // been opened through the shim's view yet, and no unwind runs.
        return -1;
    };
    errno::preserved(|| {
        // If the guard is already held (the shim is active on this thread),
        // the work below is unrecorded anyway.
        let guard = Guard::enter();
        if guard.is_some() {
            // Make sure the collector hears of the library before it goes:
            // one loaded and closed without a new stack in between would
            // otherwise never be announced, and its frames never named.
            announce::now();
        }
        unwind::before_dlclose();
    });
    let rc = real_dlclose(handle);
    errno::preserved(|| {
        let _guard = Guard::enter();
        unwind::after_dlclose();
    });
    rc
}
