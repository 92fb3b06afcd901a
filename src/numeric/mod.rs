//! Numerical building blocks shared by the models: special functions, a
//! small L-BFGS optimizer, the maximum-likelihood fit around it, tanh-sinh
//! quadrature and per-thread memos.

pub mod fit;
pub mod memo;
pub mod optim;
pub mod quad;
pub mod quantile;
pub mod special;
