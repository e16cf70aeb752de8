//! Attribution of a site to a frame and a module: the first frame outside the
//! C/C++ runtime and the allocator wrappers (`strdup`, `operator new`,
//! `std::allocator`, Rust's `alloc::`…).

use std::path::Path;

use crate::report::Frame;
use crate::state::modules::ModuleMap;
use crate::symbolize::python::PYTHON_MODULE;

/// File-name prefixes of the runtime libraries whose frames are skipped.
const RUNTIME_MODULES: &[&str] = &[
    "libc.so",
    "libc-",
    "libstdc++.so",
    "libgcc_s.so",
    "libmemshim.so",
    "ld-linux",
    "libm.so",
];

/// Function-name prefixes of allocation wrappers whose frames are skipped.
const WRAPPER_FUNCTIONS: &[&str] = &[
    "operator new",
    "operator delete",
    "__GI_",
    "__libc_",
    "__strdup",
    "__strndup",
    "strdup",
    "strndup",
    "__gnu_cxx::new_allocator",
    "__gnu_cxx::__new_allocator",
    "std::__new_allocator",
    "std::allocator",
    "std::allocator_traits",
    "alloc::alloc",
    "alloc::raw_vec",
    "__rust_alloc",
    "__rust_realloc",
    "__rdl_alloc",
    "__rdl_realloc",
    "_Znwm",
    "_Znam",
];

/// The file name of a path.
pub fn base_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Whether `path` is a C/C++ runtime library (or the shim).
///
/// Asked of the first frames of every site of a report: the file name is
/// what follows the last `/` (a module's path is a file's), not the parse
/// of every component that [`base_name`] does.
pub fn is_runtime_module(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    RUNTIME_MODULES.iter().any(|p| name.starts_with(p))
}

/// Whether `function` is an allocation wrapper.
pub fn is_wrapper_function(function: &str) -> bool {
    WRAPPER_FUNCTIONS.iter().any(|p| function.starts_with(p))
}

/// The frame a site is attributed to: in a stack with Python frames, the
/// innermost of them (the line of the program that asked, as memray shows);
/// else the first frame outside the runtime modules and the wrappers; else
/// the first frame.
pub fn attributed_frame(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| f.module.as_deref() == Some(PYTHON_MODULE))
        .or_else(|| {
            frames.iter().find(|f| {
                !is_wrapper_function(&f.function)
                    && !f.module.as_deref().is_some_and(is_runtime_module)
            })
        })
        .or_else(|| frames.first())
}

/// The module a raw stack is attributed to (no symbolization): the module of
/// the first return address outside the runtime modules; else of the first one.
pub fn attributed_module<'m>(modules: &'m ModuleMap, stack: &[u64]) -> Option<&'m str> {
    let mut first = None;
    for &addr in stack {
        let Some(m) = modules.find(addr.saturating_sub(1)) else {
            continue;
        };
        if m.path.is_empty() {
            continue;
        }
        if !is_runtime_module(&m.path) {
            return Some(&m.path);
        }
        first.get_or_insert(m.path.as_str());
    }
    first
}

/// `function (file:line) [module]`.
pub fn describe(f: &Frame) -> String {
    let mut text = if f.function == "??" {
        format!("?? {}", f.address)
    } else {
        f.function.clone()
    };
    if let Some(file) = &f.file {
        match f.line {
            Some(line) => text.push_str(&format!(" ({file}:{line})")),
            None => text.push_str(&format!(" ({file})")),
        }
    }
    if let Some(module) = &f.module {
        // Pseudo-modules (`[python]`, `[jit]`) are bracketed already.
        let base = base_name(module);
        if base.starts_with('[') {
            text.push_str(&format!(" {base}"));
        } else {
            text.push_str(&format!(" [{base}]"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> Frame {
        Frame::for_test(function, module)
    }

    #[test]
    fn wrappers_and_runtime_frames_are_skipped() {
        let frames = [
            frame("__GI___strdup", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame("operator new(unsigned long)", "/usr/lib/libstdc++.so.6"),
            frame("std::allocator<int>::allocate", "/app/bin"),
            frame("remember", "/app/bin"),
            frame("main", "/app/bin"),
        ];
        assert_eq!(attributed_frame(&frames).unwrap().function, "remember");
        assert_eq!(
            attributed_frame(&frames[..1]).unwrap().function,
            "__GI___strdup"
        );
        assert!(attributed_frame(&[]).is_none());
        assert_eq!(describe(&frames[3]), "remember [bin]");
    }
}
