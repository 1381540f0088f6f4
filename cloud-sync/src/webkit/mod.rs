//! What both web sides (the hub's dashboard and API, the gateway's console) share: serving warp
//! over TLS with hyper-util, and credentials (password hashes, tokens, the login limiter).

pub mod auth;
pub mod serve;
