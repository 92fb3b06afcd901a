//! Numerical building blocks shared by the models: special functions, a
//! small L-BFGS optimizer and per-thread memos.

pub mod memo;
pub mod optim;
pub mod special;
