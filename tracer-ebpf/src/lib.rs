//! Empty library target: lets `schedtrace` name this crate as a build-dependency
//! so that edits here re-run its build script. The programs are in `main.rs`.
#![no_std]
