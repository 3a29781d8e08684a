#![allow(unreachable_pub)] // Helpers are `pub` for sibling test modules of this one binary.

//! Calls against a real SIP peer: sipp (Debian `sip-tester`) plays the trunk for outbound
//! calls and the caller for inbound ones, over UDP and TCP.

#[path = "../api/helpers.rs"]
mod helpers;
mod hostile_endpoint;
mod inbound;
#[path = "../conversation/model_server.rs"]
#[allow(dead_code)] // Shared by the sip and conversation binaries; each uses part of it.
mod model_server;
mod outbound;
#[path = "../webhooks/receiver.rs"]
#[allow(dead_code)] // The webhook tests' receiver; this binary uses part of it.
mod receiver;
mod sipp;
mod strict_rtp;
mod tenancy;
mod torture;
mod transfer;
