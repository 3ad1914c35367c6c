//! Which requests are metered: method + path → [`Endpoint`], now defined in [`crate::vocab`]
//! (every stage names endpoints). Re-exported here so that `tap::route::Endpoint` keeps
//! resolving for the proxy; new code imports `crate::vocab` directly.

pub use crate::vocab::{ApiFamily, Endpoint};
