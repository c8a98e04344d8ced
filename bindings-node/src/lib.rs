//! Node.js bindings of regmirror (npm package `regmirror`). Thin: argument conversion and
//! error mapping only; the generated `index.d.ts` documents the API for TypeScript.

mod callbacks;
mod convert;
mod errors;
mod mirror;
mod mirrors;
mod run;
mod tag_filter;

pub use errors::ErrorCode;
pub use mirror::Mirror;
pub use mirrors::{Mirrors, WorkerHandle};
pub use tag_filter::TagFilter;
