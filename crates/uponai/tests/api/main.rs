#![allow(unreachable_pub)] // Helpers are `pub` for sibling test modules of this one binary.

//! Black-box tests of the HTTP API: each spawns the app on port 0 with a fresh data
//! directory and talks to it over HTTP.

mod agents;
mod auth;
mod batches;
mod calls;
mod egress;
mod helpers;
mod limits;
mod llms;
mod numbers;
mod persistence;
mod simulations;
mod tenancy;
mod webhooks;
