#![allow(unreachable_pub)] // Helpers are `pub` for sibling test modules of this one binary.

//! Webhooks end to end: calls against sipp (or a trunk refusing connections) produce events,
//! which a real HTTP receiver takes, refuses, answers slowly or is not there for.

mod delivery;
mod guard;
#[path = "../api/helpers.rs"]
mod helpers;
mod receiver;
#[path = "../sip/sipp.rs"]
mod sipp;
