//! The `certseal` binary's library: configuration, the gRPC server and its adapters, and the
//! command-line client. `main.rs` only parses the command line and calls into here; the
//! end-to-end tests start the same server in-process.

pub mod api;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decoders;
pub mod metrics;
pub mod public_page;
pub mod qr_image;
pub mod server;
pub mod status;
pub mod storage;
pub mod tls;

/// The generated v1 API. Only the adapters in [`api`] and the client use it.
pub mod pb {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("certseal.v1");

    /// Descriptor set served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("certseal_descriptor");
}
