//! Compiles `proto/` with protox (pure Rust, no protoc) and generates tonic
//! code plus the encoded descriptor set used for reflection and policy lookup.

use std::{env, path::PathBuf};

use prost::Message;

const FILES: &[&str] = &[
    "steward/common/v1/common.proto",
    "steward/common/v1/policy.proto",
    "steward/audit/v1/audit_event.proto",
    "steward/notifications/v1/notification.proto",
    "steward/accounts/v1/accounts_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=steward");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(FILES, ["."])?;
    let descriptor_path = out.join("steward_descriptor.bin");
    std::fs::write(&descriptor_path, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
