//! Numerical building blocks shared by the models: special functions and a
//! small L-BFGS optimizer.

pub mod optim;
pub mod special;
